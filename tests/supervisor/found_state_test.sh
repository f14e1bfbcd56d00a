#!/usr/bin/env bash
# A replay starts from the workspace as the recording found it, whatever the recording left
# (found_state.py: a state file made on the first run, a log appended to, a mkstemp file with a
# hard link made to it, a file truncated). Each file the run first changes is taped as found
# (`"found":true`); replayed twice in the workspace the recording left, and once in the one it
# started from: the same output, the workspace left as it was, semantic fidelity.
# Usage: found_state_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
mkdir -p "$work/ws" && cd "$work/ws"
echo "line 0" > log.txt
echo "a longer line" > trimmed.txt
cp -a "$work/ws" "$work/ws.before"
"$td" run -q --emit-tape "$work/run.tape" -- "$python" "$here/found_state.py" > "$work/recorded.out"
check "recorded (exit 0)" test $? = 0
cat "$work/recorded.out"
check "recorded: a first run" grep -q "first run: True runs: 1 log lines: 2 link made: True" "$work/recorded.out"
found() { grep -c "\"kind\":\"$1\",\"path\":\"$2\".*\"found\":true" "$work/run.tape"; }
check "the tape has the state file and its staging file as not there" \
  test "$(found file_delete state.json)" = 1 -a "$(found file_delete state.json.tmp)" = 1
check "  the log and the truncated file as they were" \
  test "$(found file_read log.txt)" = 1 -a "$(found file_read trimmed.txt)" = 1
check "  the link's name as not there" test "$(found file_delete scratch-link)" = 1
cp -a "$work/ws" "$work/ws.after"
for round in 1 2; do
  "$td" replay -q "$work/run.tape" --emit-tape "$work/replay$round.tape" -- \
    "$python" "$here/found_state.py" > "$work/replay$round.out"
  check "replay $round in the workspace the recording left: exit 0" test $? = 0
  check "replay $round: prints what the recording printed" diff "$work/recorded.out" "$work/replay$round.out"
  check "replay $round: leaves the workspace as it was" diff -r "$work/ws.after" "$work/ws"
  check "replay $round: semantic fidelity passes" \
    "$td" fidelity "$work/run.tape" "$work/replay$round.tape" --mode semantic
done
rm -rf "$work/ws" && cp -a "$work/ws.before" "$work/ws" && cd "$work/ws"
"$td" replay -q "$work/run.tape" -- "$python" "$here/found_state.py" > "$work/replay3.out"
check "a replay in the workspace the recording started from prints the same" \
  diff "$work/recorded.out" "$work/replay3.out"
finish "files as found"
