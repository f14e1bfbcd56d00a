#!/usr/bin/env bash
# The system-call floor's costs for programs the preload library cannot reach, as ratios
# measured side by side in one run (medians of N rounds):
#
#   1. 100,000 clock_gettime calls and 2,000 small files read whole, by the same C program
#      linked dynamically (the preload serves it) and statically (the floor serves it): each
#      alone and under `tapedeck run --emit-tape`, and what one taped call costs either way.
#   2. A Go program without a sleep (2,000 time.Now(), 200 files read, 5 subprocesses, 20 files
#      written): alone and under `tapedeck run --emit-tape`.
#
# Usage: bench/floor.sh [--rounds N] [--dir DIR] (default 5 rounds; DIR as for bench/interposer.sh:
# a tmpfs folder by default). Expects a release build, and Go for the second part.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
root=$PWD
td=$root/build/release/tapedeck
programs=$PWD/build/release/bench
[ -x "$td" ] && [ -x "$programs/clock_calls_static" ] ||
  { echo "bench/floor.sh: build first (scripts/build.sh release)" >&2; exit 2; }
scratch_dir floor $((256 * 1024))
echo "(tapes and files in $dir)"
mkdir -p "$dir/files"
for i in $(seq 0 1999); do echo "small file number $i" > "$dir/files/f$i"; done
cd "$dir"

# taped NAME CALLS CMD...: the command alone and under run --emit-tape (alternating rounds), and
# what one call costs taped.
taped() {
  local name=$1 calls=$2
  shift 2
  rm -f "$dir"/{bare,taped}.samples
  for ((round = 0; round < rounds; round++)); do
    seconds "$@" >>"$dir/bare.samples"
    seconds "$td" run -q --overwrite --emit-tape "$dir/floor.tape" -- "$@" >>"$dir/taped.samples"
  done
  local bare taped_s
  bare=$(median <"$dir/bare.samples")
  taped_s=$(median <"$dir/taped.samples")
  printf '%-34s alone %7ss   run --emit-tape %7ss (%7sx, %6s us a call)\n' "$name" "$bare" \
    "$taped_s" "$(ratio "$taped_s" "$bare")" \
    "$(awk -v t="$taped_s" -v b="$bare" -v n="$calls" 'BEGIN {printf "%.2f", 1e6 * (t - b) / n}')"
}

echo "== the preload (dynamic) against the floor (static), medians of $rounds"
taped "100,000 clock_gettime, preload" 100000 "$programs/clock_calls" 100000
taped "100,000 clock_gettime, floor" 100000 "$programs/clock_calls_static" 100000
cd "$dir/files"
taped "2,000 small file reads, preload" 2000 "$programs/read_files" . 2000
taped "2,000 small file reads, floor" 2000 "$programs/read_files_static" . 2000
cd "$dir"

echo
if command -v go >/dev/null; then
  export GOCACHE=$dir/gocache GOPATH=$dir/gopath GO111MODULE=off
  (cd "$root/bench/programs" && go build -o "$dir/go_work" go_work.go)
  echo "== a Go program without a sleep, medians of $rounds"
  taped "go_work (2,000 Now, 200 reads, 5 execs)" 2225 "$dir/go_work"
else
  echo "== a Go program: skipped (go is not installed; scripts/install-deps.sh installs it)"
fi
