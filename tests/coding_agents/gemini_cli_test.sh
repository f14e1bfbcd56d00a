#!/usr/bin/env bash
# Gemini CLI (@google/gemini-cli, pinned in package-lock.json: Node, which relaunches itself as a
# child) does a coding agent's task against the stand-in's Gemini API (examples/agents/
# standin_llm.py: a JSON answer for its routing call, then a functionCall a turn: shell commands
# that sleep a second, draw $RANDOM, read `date +%s%N` and make a uuid4, then write_file and
# read_file of notes.txt), HOME inside the workspace, --yolo. Recorded once, then replayed three
# times with the stand-in stopped, from the workspace as it was before the recording (as CI
# replays a committed tape: the directory listing in its first request is the recording's):
# every replay exits 0 and prints the recording's JSON byte for byte (session id and stats
# included), passes semantic fidelity and leaves the workspace untouched; the key is nowhere on
# the tape; the tape holds the write and the read of notes.txt. Prints the replays' time against
# the recording's.
# Not run by default (CODING_AGENTS=1 runs it): 8 of 21 replays printed the recording's JSON and
# none passed fidelity (see the README). Most others stop at a
# shell call's id, made from Date.now() in the relaunched child, whose clock a timer of the
# waiting parent moved on: the replay skipped that 8.1 s wait (the recording never reached it),
# and the tree's clock moved with it (see the README's limits).
# Usage: gemini_cli_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
if [ -z "${CODING_AGENTS:-}" ]; then
  echo "skipped: set CODING_AGENTS=1 to run it (Gemini CLI does not replay reliably yet: see above)"
  exit 77
fi
gemini=$here/node_modules/.bin/gemini
[ -x "$gemini" ] ||
  { echo "FAIL: Gemini CLI is missing from $here (scripts/install-deps.sh runs npm ci there)"; exit 1; }
key=$(printf "AIza%s" SyTapedeckTestPlaceholder0000000000)
agent() { env HOME="$work/ws/home" GEMINI_API_KEY="$key" "$@" -- "$gemini" -p "Do the task." \
  --output-format json --yolo --skip-trust; }
now_ms() { date +%s%3N; }

mkdir -p "$work/ws/home/.gemini" && cd "$work/ws"
echo '{"security":{"auth":{"selectedType":"gemini-api-key"}}}' > home/.gemini/settings.json
cp -a "$work/ws" "$work/pristine"
start_standin
started=$(now_ms)
agent "$td" run -q --emit-tape "$work/gemini.tape" --llm-upstream "http://127.0.0.1:$port" \
  > "$work/rec.out" 2> "$work/rec.err"
check "recorded (exit 0)" test $? = 0
recorded_ms=$(($(now_ms) - started))
stop_standin
check "the recording did the task: notes.txt written and read back" \
  grep -q "the plan: start small" "$work/rec.out"
check "the tape holds the write of notes.txt" has "$work/gemini.tape" 'file_write .*"notes.txt"'
check "the tape holds the read of notes.txt" has "$work/gemini.tape" 'file_read .*"notes.txt"'
check "the key is nowhere on the tape or its sidecar" \
  bash -c "! grep -rqF '$key' '$work/gemini.tape' '$work/gemini.tape.cas'"
cd "$work" && rm -rf "$work/ws" && cp -a "$work/pristine" "$work/ws" && cd "$work/ws"
same=0
replay_ms=0
for round in 1 2 3; do
  started=$(now_ms)
  bounded 120 agent "$td" replay -q "$work/gemini.tape" --emit-tape "$work/replay$round.tape" \
    > "$work/rep$round.out" 2> "$work/rep$round.err"
  status=$?
  replay_ms=$((replay_ms + $(now_ms) - started))
  if [ $status = 0 ] && cmp -s "$work/rec.out" "$work/rep$round.out"; then
    same=$((same + 1))
  else
    echo "  replay $round (exit $status): $(grep 'tapedeck: error' "$work/rep$round.err" | head -c 600)" >&2
  fi
  check "replay $round: semantic fidelity passes" \
    "$td" fidelity "$work/gemini.tape" "$work/replay$round.tape" --mode semantic
done
check "3 of 3 replays exit 0 and print the recording's JSON byte for byte ($same did)" test "$same" = 3
check "the replays left the workspace as it was" diff -r "$work/pristine" "$work/ws"
echo "recording ${recorded_ms} ms; replays $((replay_ms / 3)) ms each ($((replay_ms * 100 / 3 / recorded_ms))% of it)"
finish "gemini cli"
