#!/usr/bin/env bash
# Supply-chain checks with cargo-deny and the repo's deny.toml: advisories (offline, against
# a snapshot of the RustSec database), licences, duplicate versions and sources.
#
#   WARDEN_CACHE        where cargo-deny is installed (default: ~/.cache/warden)
#   WARDEN_ADVISORY_DB  the advisory-db snapshot folder (default: ../shared/advisory-db,
#                       beside the clone; it has a SNAPSHOT file: "<commit> <date>")
#
# Our machines cannot fetch the RustSec database, so the snapshot is copied into a git
# repository in a temporary folder, at the path cargo-deny derives from deny.toml's db-urls,
# and cargo-deny runs with --offline (which also disables fetching the database).
set -euo pipefail
cd "$(dirname "$0")/.."

WARDEN_CACHE="${WARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warden}"
DENY_VERSION="0.20.2"
DB_SRC="${WARDEN_ADVISORY_DB:-../shared/advisory-db}"
# A clone elsewhere than beside shared/ (CI's clean clone) finds the machine's snapshot.
[ -f "$DB_SRC/SNAPSHOT" ] || [ -n "${WARDEN_ADVISORY_DB:-}" ] || DB_SRC=/work/shared/advisory-db
mkdir -p "$WARDEN_CACHE/tools"

DENY_BIN="$WARDEN_CACHE/tools/bin/cargo-deny"
if ! "$DENY_BIN" --version 2>/dev/null | grep -qF "$DENY_VERSION"; then
  echo "== installing cargo-deny $DENY_VERSION into $WARDEN_CACHE/tools (about 3 minutes, once)"
  CARGO_TARGET_DIR="$WARDEN_CACHE/tools-target" \
    cargo install cargo-deny --version "$DENY_VERSION" --locked --root "$WARDEN_CACHE/tools"
  rm -rf "$WARDEN_CACHE/tools-target"
fi

[ -f "$DB_SRC/SNAPSHOT" ] || { echo "no advisory-db snapshot at $DB_SRC (set WARDEN_ADVISORY_DB)"; exit 1; }
read -r db_commit db_date < "$DB_SRC/SNAPSHOT"
echo "== advisory-db snapshot: commit $db_commit, dated $db_date (from $DB_SRC)"

dbs="$(mktemp -d)"
trap 'rm -rf "$dbs"' EXIT
# cargo-deny keeps the database for https://github.com/rustsec/advisory-db in this folder
# (the suffix is its hash of the URL in deny.toml) and reads the commit date from git.
repo="$dbs/advisory-db-3157b0e258782691"
mkdir -p "$repo"
cp -R "$DB_SRC/." "$repo/"
chmod -R u+w "$repo"
(
  cd "$repo"
  export GIT_AUTHOR_DATE="${db_date}T00:00:00Z" GIT_COMMITTER_DATE="${db_date}T00:00:00Z"
  git init -q
  git add -A
  git -c user.name=warden-ci -c user.email=ci@localhost -c commit.gpgsign=false \
    commit -q -m "advisory-db snapshot $db_commit"
  cp .git/HEAD .git/FETCH_HEAD
)

# --offline also keeps cargo metadata offline: it needs every platform's crates (windows-sys…)
# in the local registry cache, which a Linux build never downloads.
cargo fetch --locked --quiet

WARDEN_ADVISORY_DBS="$dbs" PATH="$WARDEN_CACHE/tools/bin:$PATH" \
  cargo deny --offline --color never check --show-stats
