#!/usr/bin/env bash
# File times follow the tape's clock: a file touched "now" (utimensat and futimens with no time)
# reads back, in a replay, as the clock the program reads, not the real time seconds past the
# recording's (CPython's test_os test_utime_current). Recorded, replayed twice: the same output,
# every line true.
# Usage: file_times_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
mkdir -p "$work/ws" && cd "$work/ws"
"$td" run -q --emit-tape "$work/times.tape" -- "$python" "$here/file_times.py" > "$work/recorded.out"
check "recorded (exit 0)" test $? = 0
cat "$work/recorded.out"
check "recorded: a time set to now is the clock" test "$(grep -c "clock: True" "$work/recorded.out")" = 2
check "recorded: explicit times stay" grep -q "explicit times stay: 2000000456" "$work/recorded.out"
for round in 1 2; do
  rm -f touched.txt
  "$td" replay -q "$work/times.tape" -- "$python" "$here/file_times.py" > "$work/replay$round.out"
  check "replay $round: exit 0" test $? = 0
  check "replay $round: prints what the recording printed" diff "$work/recorded.out" "$work/replay$round.out"
done
finish "file times"
