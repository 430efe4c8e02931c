#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the pinned stable
# toolchain and runs each for SECONDS (default 30) over its committed corpus in fuzz/corpus.
# New inputs found on the way go to a scratch directory, not the corpus; a crash leaves its
# input in fuzz/artifacts/TARGET and fails the script. With FUZZ_GROW=1 they are merged into
# the corpus instead (minimised: only inputs that add coverage are kept), to be committed.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#   FUZZ_GROW=1 fuzz/run.sh 300
#
# cargo-fuzz (`cargo +nightly fuzz run TARGET`) runs the same targets with AddressSanitizer
# where a nightly toolchain is installed; Sluice's code is safe Rust, so coverage is what the
# stable build keeps.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^sluice-fuzz$')
fi

# The flags cargo-fuzz passes with `--sanitizer none`, all stable: SanitizerCoverage's edge
# counters, comparison tracing and PC table, which libFuzzer reads.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/tmp/sluice-target}-fuzz}"
triple=$(rustc -vV | sed -n 's/^host: //p')
# The workspace's lockfile pins every crate the targets share with the gateway; cargo adds the
# fuzzer's own (libfuzzer-sys, arbitrary) to the copy. No lockfile of its own to fall behind.
cp ../Cargo.lock Cargo.lock
cargo build --release --target "$triple" --bins

# With FUZZ_RUNS set, each target runs that many inputs from a fixed seed instead of for
# SECONDS: the same commit explores the same inputs on every run (what CI does, so that its
# result does not depend on the machine's speed).
if [ -n "${FUZZ_RUNS:-}" ]; then
  budget=(-runs="$FUZZ_RUNS" -seed=1)
else
  budget=(-max_total_time="$seconds")
fi
mkdir -p artifacts
status=0
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  scratch=$(mktemp -d)
  mkdir -p "$corpus" "artifacts/$target"
  echo "== fuzz $target (${budget[*]}, $(find "$corpus" -type f | wc -l) corpus inputs)"
  if ! "$CARGO_TARGET_DIR/$triple/release/$target" "$scratch" "$corpus" \
      "${budget[@]}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$target/" -print_final_stats=1 2>"$scratch.log"; then
    status=1
    tail -40 "$scratch.log"
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$scratch.log" | sed "s/^/$target /" || true
  if [ "${FUZZ_GROW:-0}" = 1 ]; then
    merged=$(mktemp -d)
    "$CARGO_TARGET_DIR/$triple/release/$target" -merge=1 "$merged" "$corpus" "$scratch" 2>/dev/null
    rm -rf "$corpus" && mv "$merged" "$corpus"
    echo "$target corpus: $(find "$corpus" -type f | wc -l) inputs"
  fi
  rm -rf "$scratch" "$scratch.log"
done
exit $status
