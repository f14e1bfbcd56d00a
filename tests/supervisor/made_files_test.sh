#!/usr/bin/env bash
# Files a program makes for itself replay as made: made_files (made_files.c) names a folder and
# files with mkdtemp, mkstemp and mkstemps, in the workspace and in /tmp, and looks for a note
# before writing it. Recorded, then replayed from the workspace as it was before the recording
# (as CI replays a committed tape): the replay makes the same names (drawn from the tape's
# entropy, not glibc's own), and its first look finds no note, as the recording's did (the
# recorded read of the note, made after the program wrote it, is not served before the write).
# Another recording draws other names.
# Usage: made_files_test.sh TAPEDECK MADE_FILES
set -uo pipefail
td=$(realpath "$1")
program=$(realpath "$2")
source "$(dirname "$0")/../harness.sh"

mkdir -p "$work/pristine" && cp -a "$work/pristine" "$work/ws" && cd "$work/ws"
"$td" run -q --emit-tape "$work/made.tape" -- "$program" > "$work/rec.out" 2> "$work/rec.err"
check "recorded (exit 0)" test $? = 0
check "the recording made every name" \
  test "$(grep -cE '^mkd?s?temps?( in /tmp)?: [a-z-]+-[A-Za-z0-9]{6}' "$work/rec.out")" = 4
check "a template without XXXXXX is refused, as glibc refuses it" \
  grep -q "without XXXXXX: Invalid argument" "$work/rec.out"
check "the recording found no note before writing it" grep -q "^before writing: no note" "$work/rec.out"
cd "$work" && rm -rf "$work/ws" && cp -a "$work/pristine" "$work/ws" && cd "$work/ws"
for round in 1 2; do
  "$td" replay -q "$work/made.tape" --emit-tape "$work/replay$round.tape" -- "$program" \
    > "$work/rep$round.out" 2> "$work/rep$round.err"
  check "replay $round: exit 0" test $? = 0
  check "replay $round: printed what the recording printed (names, the note's absence)" \
    cmp "$work/rec.out" "$work/rep$round.out"
  check "replay $round: semantic fidelity passes" \
    "$td" fidelity "$work/made.tape" "$work/replay$round.tape" --mode semantic
done
check "the replays left the workspace as it was" diff -r "$work/pristine" "$work/ws"
"$td" run -q --emit-tape "$work/again.tape" -- "$program" > "$work/again.out" 2> "$work/again.err"
check "another recording draws other names" \
  bash -c "! cmp -s <(grep '^mkstemp:' '$work/rec.out') <(grep '^mkstemp:' '$work/again.out')"
finish "made files"
