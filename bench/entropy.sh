#!/usr/bin/env bash
# Taped randomness, as ratios measured side by side in one run (medians of N rounds): a program
# drawing 100 MB from /dev/urandom in 4 KiB reads, and one calling getrandom 1,000,000 times for
# 16 bytes, each alone, under `tapedeck run` untaped, and under `tapedeck run --emit-tape`; and
# the tape's size, which must not grow with the bytes drawn (one `entropy` record holds the seed).
#
# Usage: bench/entropy.sh [--rounds N] [--dir DIR] (default 5 rounds; DIR on tmpfs when there is
# room). Expects a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
td=$PWD/build/release/tapedeck
program=$PWD/build/release/bench/draw_random
[ -x "$td" ] && [ -x "$program" ] || { echo "bench/entropy.sh: build first (scripts/build.sh release)" >&2; exit 2; }
scratch_dir entropy $((64 * 1024))
echo "(tapes in $dir)"

measure() {  # measure NAME ARGS...
  local name=$1
  shift
  rm -f "$dir"/{bare,run,taped}.samples
  for ((round = 0; round < rounds; round++)); do
    seconds "$program" "$@" >>"$dir/bare.samples"
    seconds "$td" run -q -- "$program" "$@" >>"$dir/run.samples"
    seconds "$td" run -q --overwrite --emit-tape "$dir/$name.tape" -- "$program" "$@" >>"$dir/taped.samples"
  done
  local bare run taped
  bare=$(median <"$dir/bare.samples")
  run=$(median <"$dir/run.samples")
  taped=$(median <"$dir/taped.samples")
  printf '%-34s alone %7ss   run %7ss (%5sx)   taped %7ss (%5sx)   tape %s bytes, %s records\n' \
    "$name" "$bare" "$run" "$(ratio "$run" "$bare")" "$taped" "$(ratio "$taped" "$bare")" \
    "$(stat -c %s "$dir/$name.tape")" "$(($(wc -l <"$dir/$name.tape") - 1))"
}

cd "$dir"
echo "== randomness drawn under the testbench (medians of $rounds)"
measure "100 MB from /dev/urandom (4 KiB)" urandom 100
measure "1,000,000 getrandom of 16 bytes" getrandom 1000000
