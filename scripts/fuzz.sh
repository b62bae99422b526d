#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for a fixed time,
# starting from a copy of its committed seed corpus (fuzz/corpus/<target>;
# the committed corpus never grows). Fails if any target crashes, panics,
# times out or runs out of memory; the failing input is kept and printed in
# base64 (a CI machine is thrown away afterwards).
#
# Installs cargo-fuzz if missing. Builds with the nightly toolchain if
# `cargo +nightly` works, else with the default toolchain and
# RUSTC_BOOTSTRAP=1.
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 45; 0 skips everything).
#                    Long mode: FUZZ_SECONDS=600 (or more).
#   FUZZ_TARGETS     targets to run, space-separated (default: all)
#   FUZZ_JOBS        targets run at the same time (default: one per CPU)
#   FUZZ_WORK_DIR    where the working corpora and crash inputs go (default:
#                    a temporary directory, removed unless a target failed).
#                    Set it to keep a long run's corpus, or to continue one.
#   FUZZ_TARGET_DIR  build directory (default $CARGO_TARGET_DIR/fuzz, or
#                    ~/.cache/kalamdb-store/target/fuzz)
#   FUZZ_ARGS        extra libFuzzer flags for every target
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-45}"
if [ "$seconds" = 0 ]; then
  echo "fuzzing skipped (FUZZ_SECONDS=0)"
  exit 0
fi
case "$seconds" in
  *[!0-9]*) echo "FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2; exit 2 ;;
esac

target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/kalamdb-store/target}/fuzz}"
host="$(rustc -vV | sed -n 's/^host: //p')"
now() { date +%s; }

# Toolchain: nightly if installed, else stable told to accept -Z flags.
if cargo +nightly --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi
echo "toolchain: $("${cargo[@]}" --version)${RUSTC_BOOTSTRAP:+ (RUSTC_BOOTSTRAP=1)}"

t0=$(now)
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
echo "$(cargo fuzz --version) ($(($(now) - t0)) s)"

cargo fmt --manifest-path fuzz/Cargo.toml -- --check

# No sanitizer: the engine has no unsafe code, AddressSanitizer would only
# slow it down. Debug assertions and overflow checks are on.
t0=$(now)
"${cargo[@]}" fuzz build --fuzz-dir fuzz --target "$host" --target-dir "$target_dir" \
  --sanitizer none --debug-assertions
echo "build: $(($(now) - t0)) s"
bin_dir="$target_dir/$host/release"

if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

if [ -n "${FUZZ_WORK_DIR:-}" ]; then
  work="$FUZZ_WORK_DIR"
  keep_work=1
else
  work="$(mktemp -d "${TMPDIR:-/tmp}/kalamdb-fuzz.XXXXXX")"
  keep_work=0
fi
mkdir -p "$work"

read -r -a extra <<<"${FUZZ_ARGS:-}"

# Runs one target; writes its summary line to $work/<target>.result and
# fails if libFuzzer reported a crash, timeout or out-of-memory.
run_target() {
  local t="$1" corpus="$work/corpus/$1" log="$work/$1.log" t0 status=0 runs cov line
  mkdir -p "$corpus" "$work/crashes"
  if [ -d "fuzz/corpus/$t" ]; then
    cp fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  fi
  t0=$(now)
  "$bin_dir/$t" "$corpus" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/crashes/$t-" "${extra[@]}" >"$log" 2>&1 ||
    status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  [ -n "$runs" ] || runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  line="$(printf '%-16s %12s execs %5s s  cov %5s  corpus %5s files' "$t" "${runs:-?}" \
    "$(($(now) - t0))" "${cov:-?}" "$(find "$corpus" -type f | wc -l)")"
  if [ "$status" != 0 ]; then
    line="$line  FAILED (exit $status)"
    {
      echo "---- $t: last lines of $log"
      tail -n 40 "$log"
      for a in "$work/crashes/$t-"*; do
        [ -f "$a" ] || continue
        echo "---- failing input $a (base64):"
        base64 "$a" | head -c 65536
        echo
        echo "---- reproduce: $bin_dir/$t $a"
      done
    } >&2
  fi
  echo "$line" | tee "$work/$t.result"
  return "$status"
}

# Up to FUZZ_JOBS targets at a time (default: one per CPU).
jobs="${FUZZ_JOBS:-$(nproc)}"
echo "running ${#targets[@]} targets for $seconds s each, $jobs at a time"
t0=$(now)
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  rm -f "$work/$t.result"
  run_target "$t" &
  running=$((running + 1))
done
wait || true
echo "run: $(($(now) - t0)) s"

failed=()
echo
echo "== fuzz summary ($seconds s per target)"
for t in "${targets[@]}"; do
  if [ -f "$work/$t.result" ]; then
    cat "$work/$t.result"
  else
    echo "$t: no result"
  fi
  if ! [ -f "$work/$t.result" ] || grep -q FAILED "$work/$t.result"; then
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" != 0 ]; then
  echo "fuzz targets failed: ${failed[*]} (inputs and logs kept in $work)" >&2
  exit 1
fi
if [ "$keep_work" = 0 ]; then
  rm -rf "$work"
fi
