#!/usr/bin/env bash
# A packed tape (`tapedeck pack`: the tape, its sidecar entries and its manifest in one
# zstd-compressed tar) is read where a tape is, without unpacking it first: it replays (serving
# the recorded file bytes when the workspace changed since), verifies, views, shows, fmt prints
# its canonical bytes, and check finds it in a folder and passes it. The same tape packs to the
# same bytes. `unpack` gives back a tape that replays. Refused, with nothing written: a tape
# holding a credential, a tape whose sidecar lost an entry a replay needs, and a pack holding a
# member of another name (a path climbing out). The process leaves no unpacked folder behind.
# Usage: pack_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
source "$(dirname "$0")/../harness.sh"
export TMPDIR=$work/tmp  # where a command unpacks a pack it reads: checked empty at the end
mkdir "$TMPDIR"

cat > "$work/program.py" <<'PY'
import time
print(open("notes.txt").read().strip(), time.time())
open("out.txt", "w").write("written\n")
PY
mkdir -p "$work/ws" "$work/tapes"
echo "the recorded notes" > "$work/ws/notes.txt"
(cd "$work/ws" && "$td" run -q --emit-tape "$work/tapes/run.tape" -- "$python" "$work/program.py") \
  > "$work/run.out"
"$td" pack -q "$work/tapes/run.tape" -o "$work/packed/run.tdk"
check "pack writes one file" test -f "$work/packed/run.tdk"
check "  a zstd-compressed tar the tar tool lists" \
  bash -c "tar --zstd -tf '$work/packed/run.tdk' | grep -qx 'run.tape.manifest'"
mv "$work/packed/run.tdk" "$work/first.tdk"
"$td" pack -q "$work/tapes/run.tape" -o "$work/packed/run.tdk"
check "the same tape packs to the same bytes" cmp "$work/packed/run.tdk" "$work/first.tdk"

echo "notes changed since" > "$work/ws/notes.txt"
(cd "$work/ws" && "$td" replay -q "$work/packed/run.tdk" --emit-tape "$work/replay.tape" -- \
  "$python" "$work/program.py") > "$work/replay.out"
check "the pack replays, serving the recorded bytes" diff "$work/run.out" "$work/replay.out"
check "  and passes fidelity" "$td" fidelity "$work/packed/run.tdk" "$work/replay.tape" --mode semantic
check "it verifies" "$td" verify "$work/packed/run.tdk"
check "it views" "$td" view "$work/packed/run.tdk" -o "$work/view.html"
check "show finds its file read" bash -c "'$td' show '$work/packed/run.tdk' | grep -q notes.txt"
check "fmt prints its canonical tape" bash -c "'$td' fmt '$work/packed/run.tdk' 2>/dev/null | cmp - '$work/tapes/run.tape'"
"$td" check "$work/packed" > "$work/check.out" 2>&1
check "check finds it in a folder and passes it (its manifest's paths follow the pack)" \
  bash -c "[ $? = 0 ] && grep -q '1 passed' '$work/check.out'"
"$td" verify --repair "$work/packed/run.tdk" > /dev/null 2>&1
check "verify --repair of a pack is refused (exit 2)" test $? = 2

"$td" unpack -q "$work/packed/run.tdk" -o "$work/restored"
check "unpack gives the tape back" cmp "$work/restored/run.tape" "$work/tapes/run.tape"
echo "the recorded notes" > "$work/ws/notes.txt"
rm -f "$work/ws/out.txt"
"$td" check "$work/restored" > "$work/check.out" 2>&1
check "  which check passes from its new folder" bash -c "[ $? = 0 ] && grep -q '1 passed' '$work/check.out'"

# Refusals: nothing is written.
# An access key's shape, made here so that this file holds none (the tree is scanned too).
key="AKIA$(printf '%s' IOSFODNN7EXAMPLE)"
sed "s#\"path\":\"notes.txt\"#\"path\":\"$key.txt\"#" "$work/tapes/run.tape" > "$work/secret.tape"
cp -r "$work/tapes/run.tape.cas" "$work/secret.tape.cas"
"$td" pack "$work/secret.tape" -o "$work/secret.tdk" > /dev/null 2> "$work/pack.err"
check "a tape holding a credential is not packed (exit 2, one line)" \
  bash -c "[ $? = 2 ] && [ \$(wc -l < '$work/pack.err') = 1 ] && grep -q credential '$work/pack.err'"
check "  and nothing is written" test ! -e "$work/secret.tdk"
cp "$work/tapes/run.tape" "$work/lost.tape" && mkdir "$work/lost.tape.cas"
"$td" pack "$work/lost.tape" -o "$work/lost.tdk" > /dev/null 2> "$work/pack.err"
check "a tape whose sidecar lost what a replay needs is not packed (exit 2)" \
  bash -c "[ $? = 2 ] && grep -q 'file_read .*notes.txt' '$work/pack.err'"
check "  and nothing is written" test ! -e "$work/lost.tdk"
mkdir -p "$work/evil/run.tape.cas"
cp "$work/tapes/run.tape" "$work/evil/run.tape"
echo pwned > "$work/evil/escape"
(cd "$work/evil" && tar --zstd -cf "$work/evil.tdk" run.tape ../evil/escape 2> /dev/null)
"$td" verify "$work/evil.tdk" > /dev/null 2> "$work/evil.err"
check "a pack with a member of another name is refused (exit 2, one line)" \
  bash -c "[ $? = 2 ] && [ \$(wc -l < '$work/evil.err') = 1 ] && grep -q 'refused member' '$work/evil.err'"
"$td" unpack "$work/evil.tdk" -o "$work/evil-out" > /dev/null 2>&1
check "  and unpack writes nothing of it" test -z "$(ls -A "$work/evil-out" 2> /dev/null)"

check "no unpacked folder is left behind" test -z "$(ls -A "$TMPDIR")"

finish pack
