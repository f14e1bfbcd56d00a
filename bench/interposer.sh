#!/usr/bin/env bash
# The interposer's costs, as ratios measured side by side in one run (medians of N rounds):
#
#   1. A program that sleeps 5 s in all: its replay's wall time against its recording's
#      (target: under 5%); and a Python asyncio program that waits 5 s in its event loop
#      (asyncio.sleep, a select and a poll timing out: waits, not sleeps).
#   2. 1,000,000 clock_gettime calls, and 10,000 small files read whole: the program alone,
#      under `tapedeck run` untaped (the preload library loaded, nothing taped), and under
#      `tapedeck run --emit-tape` (every read taped), each as a ratio against the program alone.
#
# Usage: bench/interposer.sh [--rounds N] [--dir DIR] (default 5 rounds; DIR holds the tapes and
# the files read: a fresh folder in /dev/shm (tmpfs) when there is one, as for bench/run.sh, so
# that the numbers are the interposer's and not this VM's disk, where creating a file costs up
# to a millisecond; pass --dir /tmp/somewhere to measure on disk). Expects a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
td=$PWD/build/release/tapedeck
programs=$PWD/build/release/bench
[ -x "$td" ] && [ -x "$programs/clock_calls" ] || { echo "bench/interposer.sh: build first (scripts/build.sh release)" >&2; exit 2; }
scratch_dir interposer $((512 * 1024))
echo "(tapes and files in $dir)"

echo "== replaying a program that slept 5 s (medians of $rounds)"
cd "$dir"
rm -f "$dir"/{record,replay}.samples
for ((round = 0; round < rounds; round++)); do
  seconds "$td" run -q --overwrite --emit-tape "$dir/sleep.tape" -- "$programs/sleep_5s" >>"$dir/record.samples"
  seconds "$td" replay -q "$dir/sleep.tape" -- "$programs/sleep_5s" >>"$dir/replay.samples"
done
record=$(median <"$dir/record.samples")
replay=$(median <"$dir/replay.samples")
share=$(awk -v a="$replay" -v b="$record" 'BEGIN {printf "%.2f", 100 * a / b}')
printf 'recording %ss, replay %ss: %s%% of the recording, %s under 5%%\n' "$record" "$replay" "$share" \
  "$(awk -v s="$share" 'BEGIN {print (s < 5) ? "meets" : "MISSES"}')"

echo "== replaying a Python asyncio program that waited 5 s in its event loop (medians of $rounds)"
cat >"$dir/waits.py" <<'PY'
import asyncio, select
async def main():
    for _ in range(6):
        await asyncio.sleep(0.5)
asyncio.run(main())
select.select([], [], [], 1.0)
select.poll().poll(1000)
PY
rm -f "$dir"/{record,replay}.samples
for ((round = 0; round < rounds; round++)); do
  seconds "$td" run -q --overwrite --emit-tape "$dir/waits.tape" -- python3 "$dir/waits.py" >>"$dir/record.samples"
  seconds "$td" replay -q "$dir/waits.tape" -- python3 "$dir/waits.py" >>"$dir/replay.samples"
done
record=$(median <"$dir/record.samples")
replay=$(median <"$dir/replay.samples")
printf 'recording %ss, replay %ss: %s%% of the recording (the interpreter starting is most of it)\n' \
  "$record" "$replay" "$(awk -v a="$replay" -v b="$record" 'BEGIN {printf "%.2f", 100 * a / b}')"

# overhead NAME CALLS CMD...: the command alone, under run, under run --emit-tape (alternating
# rounds); also what one call costs taped, over the same command run untaped.
overhead() {
  local name=$1 calls=$2
  shift 2
  rm -f "$dir"/{bare,run,taped}.samples
  for ((round = 0; round < rounds; round++)); do
    seconds "$@" >>"$dir/bare.samples"
    seconds "$td" run -q -- "$@" >>"$dir/run.samples"
    seconds "$td" run -q --overwrite --emit-tape "$dir/overhead.tape" -- "$@" >>"$dir/taped.samples"
  done
  local bare run taped
  bare=$(median <"$dir/bare.samples")
  run=$(median <"$dir/run.samples")
  taped=$(median <"$dir/taped.samples")
  printf '%-26s alone %7ss   run %7ss (%6sx)   run --emit-tape %7ss (%6sx, %s us a call taped)\n' \
    "$name" "$bare" "$run" "$(ratio "$run" "$bare")" "$taped" "$(ratio "$taped" "$bare")" \
    "$(awk -v t="$taped" -v r="$run" -v n="$calls" 'BEGIN {printf "%.2f", 1e6 * (t - r) / n}')"
}

echo
echo "== overhead against the program alone (medians of $rounds)"
overhead "1,000,000 clock_gettime" 1000000 "$programs/clock_calls" 1000000
mkdir -p "$dir/files"
for i in $(seq 0 9999); do echo "small file number $i" > "$dir/files/f$i"; done
cd "$dir/files"
overhead "10,000 small file reads" 10000 "$programs/read_files" . 10000
