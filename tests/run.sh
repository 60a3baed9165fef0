#!/usr/bin/env bash
# Runs Warden's whole test suite. Installs what the tests need that a fresh machine lacks
# (the Tansu Kafka-protocol broker, built from crates.io) into a cache folder, so reruns are fast.
#
#   WARDEN_CACHE   where tools are kept (default: ~/.cache/warden)
#   TANSU_BIN      use this Tansu binary instead of installing one
#   WARDEN_CHROMIUM  use this Chromium/Chrome instead of installing Debian's `chromium`
set -euo pipefail
cd "$(dirname "$0")/.."

WARDEN_CACHE="${WARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warden}"
TANSU_VERSION="0.6.0"
mkdir -p "$WARDEN_CACHE/tools"

if [ -z "${TANSU_BIN:-}" ]; then
  TANSU_BIN="$WARDEN_CACHE/tools/bin/tansu"
  if ! "$TANSU_BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "== installing tansu $TANSU_VERSION into $WARDEN_CACHE/tools (about 10 minutes, once)"
    CARGO_TARGET_DIR="$WARDEN_CACHE/tansu-target" \
      cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql \
      --root "$WARDEN_CACHE/tools"
  fi
fi
export TANSU_BIN
echo "== tansu: $("$TANSU_BIN" --version 2>&1 | head -1)"

# The console's browser test drives a headless Chromium (Debian's `chromium`). Install it when
# missing (as root, or through sudo), then require it: the test fails instead of skipping.
if [ -z "${WARDEN_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (the console browser test)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
export WARDEN_REQUIRE_BROWSER=1
echo "== browser: $("${WARDEN_CHROMIUM:-chromium}" --version 2>/dev/null | head -1)"

# The MQTT and CoAP tests drive real clients: Debian's `mosquitto_pub`/`mosquitto_sub` (TLS
# with a client certificate) and libcoap's `coap-client-notls`. Installed when missing; the
# tests fail without them.
if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1 \
  || ! command -v coap-client-notls >/dev/null 2>&1; then
  echo "== installing mosquitto-clients and libcoap3-bin (the MQTT and CoAP tests)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    mosquitto-clients libcoap3-bin
fi
echo "== device clients: $(mosquitto_pub --help 2>/dev/null | grep -m1 version); $(coap-client-notls 2>&1 | head -1)"

echo "== cargo test"
cargo test --workspace --locked -- --test-threads=2

echo "== compose rehearsal: docker-compose.yml's services run natively (Tansu for Kafka)"
python3 tests/compose.py rehearse

echo "== soak (short): 70 % of the measured capacity for 45 s — memory and error rate flat, no event lost"
python3 tests/chaos.py soak --seconds 45

echo "== chaos: broker frozen, processor SIGKILL, gateway restart, upstream stalled and killed, connection flood"
python3 tests/chaos.py chaos --hold 8
