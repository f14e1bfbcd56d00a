#!/usr/bin/env bash
# An agent on the official OpenAI Agents SDK (agent.mjs: @openai/agents pinned in
# package-lock.json, a streamed run on the Responses API, three function tools), with the SDK's
# tracing off and on (its exporter then retries against an endpoint the testbench refuses).
# Each is recorded against the stand-in once and replayed three times with it stopped: every
# replay exits 0, prints what the recording printed (the time after the tool's 500 ms timer
# included, which goes back to the model) and passes semantic fidelity. Prints how long the
# replays took against the recording (a figure, not a check: these machines are shared).
# Not yet run by default (AGENTS_SDK=1 runs it; AGENTS_SDK_TRACING=1 adds the tracing mode): in
# about 1 run in 10, one of the three replays still reads the time after the timer a millisecond
# or a few off, idle too, and a red CI lands nothing. With tracing on, the exporter's retries also
# race its 5 s shutdown timer (stderr "request aborted", about 1 replay in 9 beside heavy tests).
# Usage: agents_sdk_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
if [ -z "${AGENTS_SDK:-}${AGENTS_SDK_TRACING:-}" ]; then
  echo "skipped: set AGENTS_SDK=1 to run it (not yet steady enough for every CI run: see above)"
  exit 77
fi
[ -d "$here/node_modules/@openai/agents" ] ||
  { echo "FAIL: @openai/agents is missing from $here (scripts/install-deps.sh runs npm ci)"; exit 1; }
export OPENAI_API_KEY
OPENAI_API_KEY=$(printf "sk-%s" tapedeck-test-placeholder)

modes=(plain)
[ -n "${AGENTS_SDK_TRACING:-}" ] && modes+=(tracing)
now_ms() { date +%s%3N; }
mkdir -p "$work/ws" && cd "$work/ws"
echo "ship the parser on friday" > notes.txt
start_standin
declare -A recorded_ms
for mode in "${modes[@]}"; do
  started=$(now_ms)
  "$td" run -q --emit-tape "$work/$mode.tape" --llm-upstream "http://127.0.0.1:$port" -- \
    node "$here/agent.mjs" "$mode" > "$work/$mode.rec" 2> "$work/$mode.err"
  check "$mode: recorded (exit 0)" test $? = 0
  recorded_ms[$mode]=$(($(now_ms) - started))
  check "$mode: the recording ran every tool" \
    test "$(grep -c '^\(read_notes\|run_date\|wait_then_time\): ' "$work/$mode.rec")" = 3
done
stop_standin
for mode in "${modes[@]}"; do
  replay_ms=0
  for round in 1 2 3; do
    started=$(now_ms)
    "$td" replay -q "$work/$mode.tape" --emit-tape "$work/$mode.$round.tape" -- \
      node "$here/agent.mjs" "$mode" > "$work/$mode.$round.out" 2>> "$work/$mode.err"
    status=$?
    replay_ms=$((replay_ms + $(now_ms) - started))
    check "$mode replay $round: exit 0" test "$status" = 0
    cmp -s "$work/$mode.rec" "$work/$mode.$round.out"
    same=$?
    check "$mode replay $round: prints what the recording printed" test "$same" = 0
    [ "$same" = 0 ] || diff "$work/$mode.rec" "$work/$mode.$round.out" | sed "s/^/  /" >&2
    "$td" fidelity "$work/$mode.tape" "$work/$mode.$round.tape" --mode semantic \
      > "$work/$mode.$round.fidelity"
    status=$?
    check "$mode replay $round: semantic fidelity" test "$status" = 0
    [ "$status" = 0 ] || grep -E "^fidelity|^  seq|^first divergence|^  [a-z_]+: recorded" \
      "$work/$mode.$round.fidelity" | cut -c1-200 | sed "s/^/  /" >&2
  done
  echo "$mode: recorded in ${recorded_ms[$mode]} ms; a replay took $((replay_ms / 3)) ms" \
    "($((replay_ms * 100 / 3 / recorded_ms[$mode]))% of it)"
done
finish "agents SDK"
