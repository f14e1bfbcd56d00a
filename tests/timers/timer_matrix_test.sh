#!/usr/bin/env bash
# The clock after a timer fires, between streamed model calls over a kept-alive connection:
# timer_matrix.py (asyncio, httpx) waits 0, 1, 10 and 500 ms after each of four streamed answers
# and prints both clocks. Recorded once against the stand-in, replayed five times with it
# stopped: every replay prints every time as recorded.
# MATRIX_ALL=1 also runs the cases issue 32 has not closed yet: the program with a second,
# retrying chain of timers beside it (`chain`), and timer_matrix.mjs (Node's fetch and libuv),
# plain and with the chain.
# Usage: timer_matrix_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
if ! "$python" -c "import httpx" 2>/dev/null; then
  echo "skipped: $python has no httpx (scripts/install-deps.sh installs python3-httpx)"
  exit 77
fi
export OPENAI_API_KEY
OPENAI_API_KEY=$(printf "sk-%s" tapedeck-test-placeholder)
cases=("$python timer_matrix.py plain")
[ -n "${MATRIX_ALL:-}" ] &&
  cases+=("$python timer_matrix.py chain" "node timer_matrix.mjs plain" "node timer_matrix.mjs chain")

mkdir -p "$work/ws" && cd "$work/ws"
start_standin
for case in "${cases[@]}"; do
  read -r interpreter program mode <<< "$case"
  name="${program%%.*}.${program##*.}.$mode"
  "$td" run -q --emit-tape "$work/$name.tape" --llm-upstream "http://127.0.0.1:$port" -- \
    "$interpreter" "$here/$program" "$mode" > "$work/$name.rec" 2> "$work/$name.err"
  check "$name: recorded (exit 0)" test $? = 0
  check "$name: the recording printed four turns" test "$(grep -c '^turn ' "$work/$name.rec")" = 4
done
stop_standin
for case in "${cases[@]}"; do
  read -r interpreter program mode <<< "$case"
  name="${program%%.*}.${program##*.}.$mode"
  same=0
  for round in 1 2 3 4 5; do
    "$td" replay -q "$work/$name.tape" -- "$interpreter" "$here/$program" "$mode" \
      > "$work/$name.$round.out" 2>> "$work/$name.err"
    if [ $? = 0 ] && cmp -s "$work/$name.rec" "$work/$name.$round.out"; then
      same=$((same + 1))
    else
      diff "$work/$name.rec" "$work/$name.$round.out" | sed "s/^/  $name replay $round: /" >&2
    fi
  done
  check "$name: 5 of 5 replays print every time as recorded ($same did)" test "$same" = 5
done
finish "timer matrix"
