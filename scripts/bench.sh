#!/usr/bin/env bash
# Runs the comparison harness (benches/compare.rs) with optimised code, reusing
# the RocksDB C++ that the test suite already compiled.
#
#   scripts/bench.sh --quick                 # N = 1M, one repetition
#   scripts/bench.sh --write-docs            # the full run behind docs/BENCHMARKS.md
#   scripts/bench.sh --quick --backends lsm,rocksdb --only fill
#   BENCH=micro scripts/bench.sh             # the criterion micro-benchmarks
#   scripts/bench.sh --write-docs --stop-after 150   # a full run over several
#   scripts/bench.sh --write-docs --resume           # sessions (benches/README.md)
#
# RocksDB is an opt-in feature of kalamdb-bench (so `cargo build --workspace`
# compiles no C++); this script turns it on. BENCH_FEATURES="" leaves it out.
#
# `cargo bench` (the release profile) is fine too, but compiles RocksDB's C++
# once more (20+ minutes on 2 cores). This script builds in the dev profile
# with the Rust code optimised instead: opt-level 3 without debug assertions
# or overflow checks for the workspace and the crates the backends run on,
# while librocksdb-sys and the build scripts keep the settings of
# Cargo.toml's dev profile, so the C++ build of the test suite (-O2, RocksDB's
# own default level, NDEBUG) is reused as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kalamdb-store/target}"
cfg=(
  --config 'profile.dev.opt-level=3'
  --config 'profile.dev.debug="line-tables-only"'
  --config 'profile.dev.debug-assertions=false'
  --config 'profile.dev.overflow-checks=false'
  --config 'profile.dev.incremental=false'
  # Keep RocksDB's build and every build script as the test suite built them.
  --config 'profile.dev.package.librocksdb-sys.debug-assertions=true'
  --config 'profile.dev.package.librocksdb-sys.overflow-checks=true'
  --config 'profile.dev.build-override.debug-assertions=true'
  --config 'profile.dev.build-override.overflow-checks=true'
)
# Dependencies stay at Cargo.toml's opt-level 1 except those the backends
# spend their time in (listed by name: raising `"*"` would also change the
# build scripts' dependencies and so rebuild RocksDB's C++).
for p in kalamdb-lsm fjall lsm-tree redb sled crossbeam-skiplist crossbeam-epoch \
  crossbeam-utils bytes tokio quick_cache byteview xxhash-rust dashmap parking_lot \
  parking_lot_core imbl rocksdb; do
  cfg+=(--config "profile.dev.package.$p.opt-level=3")
done

# The command the report prints.
export KALAMDB_BENCH_COMMAND="scripts/bench.sh $*"
features=()
if [ -n "${BENCH_FEATURES-rocksdb}" ]; then
  features=(--features "${BENCH_FEATURES-rocksdb}")
fi
exec nice -n "${NICE:-15}" cargo bench -p kalamdb-bench --bench "${BENCH:-compare}" \
  "${features[@]}" --profile dev "${cfg[@]}" -- "$@"
