#!/usr/bin/env bash
# A run's /tmp is its own (src/supervisor/private_temp.hpp): what the program and its tools write
# there never reaches the host's /tmp, in the recording or in a replay; what the host had there
# stays readable; the workspace, beneath /tmp here, stays the real one while recording; a TMPDIR
# elsewhere is pointed at /tmp. Two replays print what the recording printed (the mkdtemp name,
# and what the tools left in /tmp, which a replay makes since it does not run them) and leave the
# host's /tmp and the workspace as they were.
# Usage: private_temp_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
if [ "$(id -u)" != 0 ]; then
  echo "skipped: a recording's private /tmp needs root"
  exit 77
fi
# The host's side lies in /tmp itself, whatever TMPDIR says; the run's folder goes elsewhere, to
# a TMPDIR the program must not see.
host=$(mktemp -d /tmp/tapedeck-private-temp-XXXXXX)
elsewhere=$(mktemp -d /var/tmp/tapedeck-private-temp-XXXXXX)
on_exit+=('rm -rf "$host" "$elsewhere"')
echo "put there by the host" > "$host/from-host.txt"
mkdir -p "$host/ws" && cd "$host/ws"
program=("$python" "$here/private_temp.py" "$host")

TMPDIR=$elsewhere "$td" run -q --emit-tape "$work/run.tape" -- "${program[@]}" \
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
check "the workspace beneath /tmp was written for real" test -s result.txt
check "what the tools left in /tmp is on the tape" has "$work/run.tape" "file_write.*/tmp/agent-.*/made/out.txt"
check "no warning that /tmp is shared" test "$(grep -c "/tmp is the host's" "$work/recorded.err")" = 0
cp result.txt "$work/result.recorded"

for round in 1 2; do
  "$td" replay -q "$work/run.tape" -- "${program[@]}" > "$work/replay$round.out" 2> "$work/replay$round.err"
  check "replay $round: exit 0" test $? = 0
  check "replay $round: prints what the recording printed" diff "$work/recorded.out" "$work/replay$round.out"
  check "replay $round: leaves nothing in the host's /tmp" test ! -e "$folder" -a ! -e "$host/written.txt"
  check "replay $round: the workspace is as it was" cmp -s result.txt "$work/result.recorded"
done
check "the host's folder holds what it held" test "$(ls "$host" | tr '\n' ' ')" = "from-host.txt ws "
finish "private /tmp"
