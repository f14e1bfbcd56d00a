#!/usr/bin/env bash
# What running every subprocess of a recording under the preload costs (so that the one that
# calls the LLM, and the ones on the way to it, can be taped: README, "The agent is the process
# that talks to the model"): a shell script that runs 60 tools (wc, grep, sed, sort over the
# workspace's files; none calls the LLM, so each is held and dropped), natively, recorded and
# replayed, as ratios against the native run (medians of N rounds, side by side in one run).
#
# Usage: bench/subprocesses.sh [--rounds N] [--dir DIR] (default 5 rounds; DIR as for
# bench/interposer.sh). Expects a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
td=$PWD/build/release/tapedeck
[ -x "$td" ] || { echo "bench/subprocesses.sh: build first (scripts/build.sh release)" >&2; exit 2; }
scratch_dir subprocesses $((64 * 1024))
echo "(tapes and files in $dir)"
mkdir -p "$dir/ws"
for n in $(seq 20); do seq $((n * 50)) > "$dir/ws/file$n.txt"; done
cat > "$dir/ws/tools.sh" <<'SH'
for n in $(seq 15); do
  wc -l file$n.txt > /dev/null
  grep -c 7 file$n.txt > /dev/null
  sed -n 3p file$n.txt > /dev/null
  sort -r file$n.txt | head -1 > /dev/null
done
echo done
SH
cd "$dir/ws"
rm -f "$dir"/{native,record,replay}.samples
for ((round = 0; round < rounds; round++)); do
  seconds sh tools.sh >>"$dir/native.samples"
  seconds "$td" run -q --overwrite --emit-tape "$dir/tools.tape" -- sh tools.sh >>"$dir/record.samples"
  seconds "$td" replay -q "$dir/tools.tape" -- sh tools.sh >>"$dir/replay.samples"
done
native=$(median <"$dir/native.samples")
record=$(median <"$dir/record.samples")
replay=$(median <"$dir/replay.samples")
printf 'native %ss, recorded %ss (%sx), replayed %ss (%sx) for 60 tools (medians of %s)\n' \
  "$native" "$record" "$(awk -v a="$record" -v b="$native" 'BEGIN {printf "%.1f", a / b}')" \
  "$replay" "$(awk -v a="$replay" -v b="$native" 'BEGIN {printf "%.1f", a / b}')" "$rounds"
