#!/usr/bin/env bash
# A run's /tmp is its own, and so is a replay's home folder (src/supervisor/private_world.hpp).
# What the program and its tools write in /tmp never reaches the host's /tmp, in the recording or
# in a replay; what the host had there stays readable; the workspace, beneath /tmp here, stays
# the real one while recording; a TMPDIR elsewhere is pointed at /tmp. The recording keeps its
# state in the real home (outside /tmp and the workspace), and tapes each home file it changes
# as it found it; a replay writes its own home only. With the home as the recording left it,
# two replays print what the recording printed (the mkdtemp name, what the tools left in /tmp,
# which a replay makes since it does not run them, the count, the settings, the marker not there
# yet) and leave the host's /tmp, the home and the workspace as they were; so do a Node agent's
# (home_settings.mjs) replays.
# Usage: private_world_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
if [ "$(id -u)" != 0 ]; then
  echo "skipped: a recording's private /tmp needs root"
  exit 77
fi
# The host's side lies in /tmp itself, whatever TMPDIR says; the run's folder goes elsewhere, to
# a TMPDIR the program must not see, and so does the home.
host=$(mktemp -d /tmp/tapedeck-private-world-XXXXXX)
elsewhere=$(mktemp -d /var/tmp/tapedeck-private-world-XXXXXX)
on_exit+=('rm -rf "$host" "$elsewhere"')
echo "put there by the host" > "$host/from-host.txt"
echo "for a tool to remove" > "$host/to-remove.txt"
mkdir "$host/folder-to-remove" && echo "in it" > "$host/folder-to-remove/inner.txt"
mkdir -p "$host/ws" "$elsewhere/home/.config/agent" "$elsewhere/runs" && cd "$host/ws"
export HOME=$elsewhere/home
echo '{"theme": "dark", "runs": 0}' > "$HOME/.config/agent/settings.json"
program=("$python" "$here/private_world.py" "$host")

TMPDIR=$elsewhere/runs "$td" run -q --emit-tape "$work/run.tape" -- "${program[@]}" \
  > "$work/recorded.out" 2> "$work/recorded.err"
check "recorded (exit 0)" test $? = 0
cat "$work/recorded.out"
folder=$(sed -n 's/^temporary folder \([^ ]*\) .*/\1/p' "$work/recorded.out")
check "the program made a temporary folder in /tmp" test "${folder#/tmp/agent-}" != "$folder"
check "the program read the host's file" grep -q "says put there by the host" "$work/recorded.out"
check "the program saw TMPDIR=/tmp, not the run's TMPDIR" grep -qx "TMPDIR /tmp" "$work/recorded.out"
check "the recording's temporary folder is not in the host's /tmp" test ! -e "$folder"
check "the program's file beside the host's is not in the host's /tmp" test ! -e "$host/written.txt"
check "the tool's file is not in the host's /tmp" test ! -e "$host/tool.txt"
check "the host's files a tool removed are gone for the program" \
  grep -qx "after the tool removed them, the host's file is there: False and its folder: False" \
  "$work/recorded.out"
check "  and still in the host's /tmp" test -e "$host/to-remove.txt" -a -e "$host/folder-to-remove/inner.txt"
check "  and their removals on the tape" \
  bash -c "'$td' show '$work/run.tape' | grep -q 'file_delete.*to-remove.txt' &&
           '$td' show '$work/run.tape' | grep -q 'folder_removed.*folder-to-remove'"
check "the workspace beneath /tmp was written for real" test -s result.txt
check "the recording counted its run in the real home" test "$(cat "$HOME/.agentrc")" = 1
check "  updated its settings there" grep -q '"runs": 1' "$HOME/.config/agent/settings.json"
check "  and left its first-run marker" test -e "$HOME/.agent-first-run"
check "the home's files as the run found them are on the tape" \
  bash -c "'$td' show '$work/run.tape' | grep -q 'file_delete *\"/~/.agentrc\"' &&
           '$td' show '$work/run.tape' | grep -q 'file_read *\"/~/.config/agent/settings.json\"' &&
           '$td' show '$work/run.tape' | grep -q 'file_delete *\"/~/.agent-first-run\"'"
cp -a "$HOME" "$work/home.recorded"
check "what the tools left in /tmp is on the tape" has "$work/run.tape" "file_write.*/tmp/agent-.*/made/out.txt"
check "no warning that /tmp is shared" test "$(grep -c "/tmp is the host's" "$work/recorded.err")" = 0
cp result.txt "$work/result.recorded"

# The home as the recording left it: each replay reads its files as the recording found them,
# and leaves them as they are.
for round in 1 2; do
  "$td" replay -q "$work/run.tape" -- "${program[@]}" > "$work/replay$round.out" 2> "$work/replay$round.err"
  check "replay $round: exit 0" test $? = 0
  check "replay $round: prints what the recording printed" diff "$work/recorded.out" "$work/replay$round.out"
  check "replay $round: leaves nothing in the host's /tmp" test ! -e "$folder" -a ! -e "$host/written.txt"
  check "replay $round: leaves the home as it was" diff -r "$work/home.recorded" "$HOME"
  check "replay $round: the workspace is as it was" cmp -s result.txt "$work/result.recorded"
  check "replay $round: no warning that /tmp or the home is shared" \
    test "$(grep -c "is the host's" "$work/replay$round.err")" = 0
done
# A Node agent whose settings live in the home: its replays print what its recording printed
# and leave the home's files as the recording left them.
echo '{"runs": 0, "theme": "dark"}' > "$HOME/.config/agent.json"
"$td" run -q --emit-tape "$work/node.tape" -- node "$here/home_settings.mjs" > "$work/node.rec"
check "node: recorded (exit 0)" test $? = 0
check "node: the recording updated its settings" grep -q '"runs":1' "$HOME/.config/agent.json"
rm -rf "$work/home.recorded" && cp -a "$HOME" "$work/home.recorded"
for round in 1 2; do
  "$td" replay -q "$work/node.tape" -- node "$here/home_settings.mjs" > "$work/node.rep$round"
  check "node replay $round: exit 0, prints what the recording printed" cmp "$work/node.rec" "$work/node.rep$round"
done
check "node: the replays left the home as the recording left it" diff -r "$work/home.recorded" "$HOME"
check "the host's folder holds what it held" \
  test "$(ls "$host" | tr '\n' ' ')" = "folder-to-remove from-host.txt to-remove.txt ws "
finish "private /tmp and home"
