#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this kind or a warm one.
#
# Installs what it needs (libclang for RocksDB's bindgen; cargo-nextest if
# missing), then: format check, clippy on every target and feature, the
# default build's "no C/C++" check, every test (nextest) and the doctests,
# then builds the fuzz targets and runs each briefly (scripts/fuzz.sh).
#
# Environment:
#   CARGO_TARGET_DIR  build directory (default ~/.cache/kalamdb-store/target,
#                     outside the clone so RocksDB's C++ is built once per machine)
#   TMPDIR            where tests put their databases (default /dev/shm if writable)
#   DIFF_CASES        cases per differential proptest (defaults in tests/differential.rs)
#   FUZZ_SECONDS      seconds per fuzz target (default 45; 0 skips fuzzing;
#                     see scripts/fuzz.sh for the long mode and other knobs)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kalamdb-store/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "system packages"
if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq libclang-dev >/dev/null
fi
echo "libclang: $(ldconfig -p | grep -m1 -o 'libclang[-.0-9]*\.so[.0-9]*')"

step "cargo tools"
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo nextest --version | head -1

if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
echo "TMPDIR=${TMPDIR:-/tmp} CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

step "cargo fmt --check"
cargo fmt --all -- --check

step "default build compiles no C/C++"
if cargo tree -p kalamdb-store -e normal,build --prefix none | grep -E '^(librocksdb-sys|bindgen|cc|cmake) '; then
  echo "the default build pulls in a C/C++ build dependency (above)" >&2
  exit 1
fi
# Nor does the whole workspace with default features (RocksDB is opt-in in
# kalamdb-bench too); the clippy and test steps below build it (--all-features).
if cargo tree --workspace -e normal,build,dev --prefix none | grep -E '^librocksdb-sys '; then
  echo "the workspace's default build compiles RocksDB (above)" >&2
  exit 1
fi
cargo build --workspace --all-targets

step "clippy (all targets, all features)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests (all features)"
cargo nextest run --workspace --all-features --no-fail-fast

step "doctests"
cargo test --workspace --all-features --doc

step "quickstart"
cargo run --example quickstart -- "${TMPDIR:-/tmp}/kalamdb-quickstart-$$"

step "fuzz targets (${FUZZ_SECONDS:-45} s each)"
./scripts/fuzz.sh

step "all passed"
