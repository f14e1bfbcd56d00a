#!/usr/bin/env bash
# Replay's file system answers as the real one: tests/supervisor/fileops.py (every everyday file
# operation, each printed with what the file system answered) is run natively, recorded under
# `tapedeck run` and replayed under `tapedeck replay --isolation MODE`, each in a fresh copy of
# the same starting workspace. The three outputs must be identical; the recording must leave
# the workspace as the native run does; the replay must leave it exactly as it found it (modes,
# links and bytes compared); a replay in a workspace whose input changed since still prints what
# the recording read; two replays print the same bytes.
# `unprivileged` runs the namespace case again as an unprivileged user (when run as root), whose
# private view is a bind-mounted copy (an unprivileged overlayfs cannot rename folders).
# Usage: fileops_test.sh TAPEDECK namespace|copy|unprivileged
set -uo pipefail
td=$(realpath "$1")
isolation=$2
here=$(cd "$(dirname "$0")" && pwd)
if [ "$isolation" = unprivileged ]; then
  if [ "$(id -u)" != 0 ]; then exec bash "$0" "$td" namespace; fi
  # The user must reach everything: the binaries (tapedeck finds its preload library and exec
  # shim beside itself), this script and the program, in a folder of its own.
  shared=$(mktemp -d)
  trap 'rm -rf "$shared"' EXIT
  cp "$td" "$(dirname "$td")/tapedeck-exec" "$(dirname "$td")/libtapedeck_preload.so" "$shared/"
  cp "$0" "$here/fileops.py" "$here/../harness.sh" "$shared/"
  chmod -R a+rX "$shared"
  chmod a+rwx "$shared"
  setpriv --reuid=nobody --regid=nogroup --clear-groups env TMPDIR="$shared" \
    bash "$shared/fileops_test.sh" "$shared/tapedeck" namespace
  exit $?
fi
# (The copy run as another user has the harness beside it.)
if [ -f "$here/harness.sh" ]; then source "$here/harness.sh"; else source "$here/../harness.sh"; fi

# The starting workspace: a few files, a folder, a link, a file of its own mode.
mkdir -p "$work/start/docs"
printf 'hello workspace\nline two\n' > "$work/start/input.txt"
echo bye > "$work/start/delete-me.txt"
echo "a note" > "$work/start/docs/readme.md"
chmod 600 "$work/start/docs/readme.md"
ln -s docs/readme.md "$work/start/readme-link"

fresh() { rm -rf "$work/$1" && cp -a "$work/start" "$work/$1"; }
# Every entry under a folder: type, mode, path, link target, and each file's bytes by digest.
tree_of() {
  (cd "$1" && find . -printf '%y %m %p %l\n' | LC_ALL=C sort &&
     find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# The same, with the names in tmp/ (random: mkstemp, mkdtemp) left out, only how many there are.
stable_tree_of() {
  tree_of "$1" | grep -v '[ /]\./tmp/\|^[a-z] [0-7]* \./tmp/'
  find "$1/tmp" -mindepth 1 | wc -l
}

fresh native
(cd "$work/native" && "$python" "$here/fileops.py") > "$work/native.out" 2> "$work/native.err"
check "the program runs natively" test $? = 0
check "natively it answers every step" grep -q "^66 " "$work/native.out"

fresh recorded
(cd "$work/recorded" && "$td" run -q --emit-tape "$work/run.tape" -- "$python" "$here/fileops.py") \
  > "$work/run.out" 2> "$work/run.err"
check "the recording exits 0" test $? = 0
check "record = native" diff "$work/native.out" "$work/run.out"
check "the recording leaves the workspace as the native run does" \
  diff <(stable_tree_of "$work/native") <(stable_tree_of "$work/recorded")
check "the tape verifies" "$td" verify "$work/run.tape"
check "a file written and deleted at once is taped as written, then deleted" \
  bash -c "'$td' show '$work/run.tape' | grep -v clock_read | grep -A1 'file_write *\"short-lived.txt\"' | grep -q 'file_delete *\"short-lived.txt\"'"

fresh replayed
tree_of "$work/replayed" > "$work/before.tree"
(cd "$work/replayed" && timeout 120 "$td" replay "$work/run.tape" --isolation "$isolation" --json \
   --emit-tape "$work/replay.tape" -- "$python" "$here/fileops.py") \
  > "$work/replay.out" 2> "$work/replay.err"
check "the replay exits 0 (and does not hang)" test $? = 0
check "replay = record" diff "$work/run.out" "$work/replay.out"
check "the replay left the workspace byte for byte, mode for mode, link for link" \
  diff "$work/before.tree" <(tree_of "$work/replayed")
check "the replay ran in the $isolation view, said so in --json" \
  grep -q "\"isolation\":\"$isolation\"" "$work/replay.err"
layer=copy
[ "$isolation" = namespace ] && layer=overlayfs
[ "$isolation" = namespace ] && [ "$(id -u)" != 0 ] && layer="bind-mounted copy"
check "  made of: $layer" grep -q "\"view\":\"$layer\"" "$work/replay.err"
check "the replay tapes as many file records as the recording" test \
  "$("$td" stats "$work/run.tape" --json | "$python" -c 'import json,sys; k=json.load(sys.stdin)["by_kind"]; print(k.get("file_read",0), k.get("file_write",0), k.get("file_delete",0))')" = \
  "$("$td" stats "$work/replay.tape" --json | "$python" -c 'import json,sys; k=json.load(sys.stdin)["by_kind"]; print(k.get("file_read",0), k.get("file_write",0), k.get("file_delete",0))')"

check "tapedeck fidelity --mode semantic passes (temp names included: randomness is taped)" \
  "$td" fidelity "$work/run.tape" "$work/replay.tape" --mode semantic

# The workspace changed since the recording: the replay still reads what the recording read.
fresh changed
echo "changed after the recording" > "$work/changed/input.txt"
tree_of "$work/changed" > "$work/changed-before.tree"
(cd "$work/changed" && timeout 120 "$td" replay -q "$work/run.tape" --isolation "$isolation" -- \
   "$python" "$here/fileops.py") > "$work/changed.out" 2> "$work/changed.err"
check "a changed workspace file replays as recorded" diff "$work/run.out" "$work/changed.out"
check "  and stays as it was changed" diff "$work/changed-before.tree" <(tree_of "$work/changed")

fresh again
(cd "$work/again" && timeout 120 "$td" replay -q "$work/run.tape" --isolation "$isolation" -- \
   "$python" "$here/fileops.py") > "$work/again.out" 2> /dev/null
check "a second replay prints the same bytes" diff "$work/replay.out" "$work/again.out"

# Subprocesses change the workspace (they do not run on replay: their changes are taped and
# made again in the view), then the root looks: bash's own tests and globbing, and an ls it
# execs as itself.
changes_script='mkdir -p own && echo mine > own/own.txt
sort -o sorted.txt input.txt; rm delete-me.txt; mkdir -p made/deeper
sh -c "printf \"#!/bin/sh\\necho the tool ran\\n\" > made/tool.sh; chmod 755 made/tool.sh"
[ -x made/tool.sh ] && echo "made/tool.sh is executable"; ./made/tool.sh
cp docs/readme.md made/deeper/copy.md; chmod 644 made/deeper/copy.md
[ -f sorted.txt ] && echo "sorted.txt is there: $(wc -c < sorted.txt) bytes"
[ -e delete-me.txt ] || echo "delete-me.txt is gone"
mkdir -p nest/a/b/c && echo deep > nest/a/b/c/f && read -r deep < nest/a/b/c/f && echo "nest: $deep"
echo made/deeper/*; read -r line < made/deeper/copy.md; echo "copy says: $line"
exec ls -R'
fresh sub-native
(cd "$work/sub-native" && bash -c "$changes_script") > "$work/sub-native.out" 2>&1
fresh sub-recorded
(cd "$work/sub-recorded" && "$td" run -q --emit-tape "$work/sub.tape" -- bash -c "$changes_script") \
  > "$work/sub-run.out" 2> "$work/sub-run.err"
check "subprocesses' changes: record = native" diff "$work/sub-native.out" "$work/sub-run.out"
check "  taped as changes by a subprocess" \
  test "$("$td" show "$work/sub.tape" | grep -c 'by a subprocess')" -ge 3
check "  a file the root wrote itself is not a subprocess's" \
  bash -c "! '$td' show '$work/sub.tape' | grep -q 'own/own.txt.*by a subprocess'"
check "  the mode of what a subprocess made is taped" \
  bash -c "'$td' show '$work/sub.tape' --json | grep -q '\"path\":\"made/tool.sh\".*\"by_subprocess\":true,\"mode\":493'"
fresh sub-replayed
(cd "$work/sub-replayed" && timeout 120 "$td" replay -q "$work/sub.tape" --isolation "$isolation" \
   -- bash -c "$changes_script") > "$work/sub-replay.out" 2> "$work/sub-replay.err"
check "  replay = record, though the subprocesses did not run" \
  diff "$work/sub-run.out" "$work/sub-replay.out"
check "  and the workspace is as it was" diff <(tree_of "$work/start") <(tree_of "$work/sub-replayed")

if [ "$failures" -gt 0 ]; then
  for f in native.err run.err replay.err changed.err sub-run.err sub-replay.err; do echo "--- $f"; tail -5 "$work/$f"; done
fi
finish "file-operation ($isolation)"
