#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 20), starting from the seed
# corpus committed under fuzz/corpus/<target>/. New inputs go to a temporary folder, so the
# committed corpus only changes by hand. A crash fails the run and prints the input's path
# and bytes (libFuzzer keeps it under fuzz/artifacts/<target>/); turn it into a regression
# test in the normal suite, then fix it.
#
#   tests/fuzz.sh [SECONDS] [TARGET...]
#   WARDEN_CACHE   where cargo-fuzz is installed and fuzz builds are kept (default: ~/.cache/warden)
#
# Needs the nightly toolchain (libFuzzer's instrumentation). Without it, this says so and
# stops: the stable property tests over the same entry points (crates/warden-gateway/src/
# props.rs) run in the normal suite either way.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${1:-20}"
shift || true
WARDEN_CACHE="${WARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warden}"
FUZZ_VERSION="0.13.2"
mkdir -p "$WARDEN_CACHE/tools"
export PATH="$WARDEN_CACHE/tools/bin:$PATH"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "== fuzz: no nightly toolchain on this machine: libFuzzer targets skipped"
  exit 0
fi
if ! cargo fuzz --version 2>/dev/null | grep -qF "$FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $FUZZ_VERSION into $WARDEN_CACHE/tools (about a minute, once)"
  CARGO_TARGET_DIR="$WARDEN_CACHE/tools-target" \
    cargo install cargo-fuzz --version "$FUZZ_VERSION" --locked --root "$WARDEN_CACHE/tools"
  rm -rf "$WARDEN_CACHE/tools-target"
fi

# No sanitizer: the workspace forbids `unsafe`, so what libFuzzer looks for here is panics
# (index, overflow with debug assertions, unwrap, assertion failures) and hangs; ASan would
# double the build and halve the executions. Debug assertions on.
flags=(-s none -a --target-dir "$WARDEN_CACHE/fuzz-target")
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

echo "== fuzz: building ${#targets[@]} targets (nightly, $WARDEN_CACHE/fuzz-target)"
start=$(date +%s)
(cd fuzz && cargo +nightly fuzz build "${flags[@]}")
echo "== fuzz: built in $(( $(date +%s) - start )) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
passed=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  log="$work/$t.log"
  echo "== fuzz $t: ${SECONDS_EACH} s from $(ls "fuzz/corpus/$t" 2>/dev/null | wc -l) seeds"
  if (cd fuzz && cargo +nightly fuzz run "${flags[@]}" "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=3072 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/") >"$log" 2>&1; then
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 || true)
    echo "   ok: $runs runs, $cov, corpus $(ls "$work/$t" | wc -l) new inputs"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "   CRASH in $t:"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 | sed 's/^/   /'
    for a in $(grep -oE 'artifacts/[^ ]+' "$log" | sort -u); do
      echo "   input fuzz/$a (hex):"
      xxd -l 512 "fuzz/$a" | sed 's/^/     /' || true
    done
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
