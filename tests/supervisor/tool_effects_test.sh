#!/usr/bin/env bash
# What a tool does to the workspace replays completely: tests/supervisor/tool_effects.py runs
# thirty tool commands one subprocess at a time (mkdir -p five deep, cp -r, mv, rm -rf, ln -s,
# ln, chmod, tar, unzip, git commits and a branch switch, sed -i, install -D, …) and lists the
# workspace after each. Run natively, recorded, and replayed in both views (overlay and copy),
# each in a fresh empty workspace, the four listings must be identical, and the replays must
# leave the workspace as they found it. The program also writes a file of its own while a
# subprocess runs: taped as its write, not the subprocess's.
# Usage: tool_effects_test.sh TAPEDECK [REPEAT]  (REPEAT: each command that many times in a loop)
set -uo pipefail
td=$(realpath "$1")
repeat=${2:-0}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../harness.sh"
args=(--attribution)
[ "$repeat" -gt 0 ] && args+=(--repeat "$repeat")
program=("$python" "$here/tool_effects.py" "${args[@]}")

mkdir "$work/native" "$work/recorded" "$work/overlay" "$work/copy"
(cd "$work/native" && "${program[@]}") > "$work/native.out" 2> "$work/native.err"
check "the program runs natively" test $? = 0
check "natively every command ran" grep -q "^## 30 " "$work/native.out"

(cd "$work/recorded" && "$td" run -q --emit-tape "$work/run.tape" -- "${program[@]}") \
  > "$work/run.out" 2> "$work/run.err"
check "the recording exits 0" test $? = 0
check "record = native, listing for listing" diff "$work/native.out" "$work/run.out"
check "the tape verifies" "$td" verify "$work/run.tape"
"$td" show "$work/run.tape" > "$work/show.txt"
check "the program's own write while its subprocess ran is taped as the program's" \
  bash -c "grep 'file_write *\"mine.txt\"' '$work/show.txt' | grep -vq 'by a subprocess' &&
           ! grep 'file_write *\"mine.txt\"' '$work/show.txt' | grep -q 'by a subprocess'"
if [ "$repeat" = 0 ]; then
  for kind in folder_made folder_removed symlink_made hard_link_made mode_set; do
    check "the tape holds a $kind record" grep -q " $kind " "$work/show.txt"
  done
fi

for isolation in namespace copy; do
  dir=$work/$([ $isolation = namespace ] && echo overlay || echo copy)
  (cd "$dir" && timeout 600 "$td" replay "$work/run.tape" --isolation "$isolation" \
     -- "${program[@]}") > "$work/$isolation.out" 2> "$work/$isolation.err"
  check "the replay in the $isolation view exits 0" test $? = 0
  check "replay ($isolation) = record, listing for listing" \
    diff "$work/run.out" "$work/$isolation.out"
  check "the replay ($isolation) left the workspace as it found it (empty)" \
    test -z "$(ls -A "$dir")"
done
finish tool_effects
