#!/usr/bin/env bash
# A tape carries everything its replay needs: `fmt -o` to another folder takes the bytes of every
# file read with it, so a replay of the moved tape in a workspace whose files changed since still
# serves the recorded bytes and passes fidelity; `verify` names the record whose file bytes are
# missing from the sidecar (exit 1); `stats` counts them. A tape `run` wrote says that its
# sidecar keeps every file's bytes and what was printed: `verify` fails it when the sidecar is
# gone or lost its only file-bytes entry, while a reference vector (file hashes as digests only,
# no sidecar) still verifies.
# Usage: references_test.sh TAPEDECK VECTORS_DIR
set -uo pipefail
td=$(realpath "$1")
vectors=$2
source "$(dirname "$0")/../harness.sh"

cat > "$work/program.py" <<'PY'
print(open("tasks.txt").read().strip())
open("done.txt", "w").write("done\n")
PY
mkdir "$work/ws" && echo "write the report" > "$work/ws/tasks.txt"
(cd "$work/ws" && "$td" run -q --emit-tape "$work/run.tape" -- "$python" "$work/program.py") > "$work/run.out"
mkdir "$work/elsewhere"
"$td" fmt "$work/run.tape" -o "$work/elsewhere/moved.tape" 2> /dev/null
check "fmt -o carried the file bytes" \
  test "$(ls "$work/elsewhere/moved.tape.cas" | wc -l)" -ge 2
check "the moved tape verifies" "$td" verify "$work/elsewhere/moved.tape"

rm -f "$work/ws/done.txt"
echo "something else entirely" > "$work/ws/tasks.txt"
(cd "$work/ws" && "$td" replay -q "$work/elsewhere/moved.tape" --emit-tape "$work/replay.tape" -- \
   "$python" "$work/program.py") > "$work/replay.out"
check "a replay of the moved tape serves the recorded bytes" diff "$work/run.out" "$work/replay.out"
check "  and passes fidelity" "$td" fidelity "$work/run.tape" "$work/replay.tape" --mode semantic

"$td" stats "$work/run.tape" --json > "$work/stats.json"
check "stats counts the file bytes kept" \
  "$python" -c "import json,sys; sys.exit(json.load(open('$work/stats.json'))['file_bytes']['entries'] < 2)"

cp "$work/run.tape" "$work/broken.tape" && cp -r "$work/run.tape.cas" "$work/broken.tape.cas"
hash=$(grep -o '"kind":"file_read","path":"tasks.txt","content_hash":"[0-9a-f]*"' "$work/run.tape" |
  head -1 | grep -o '[0-9a-f]\{64\}')
rm "$work/broken.tape.cas/$hash"
"$td" verify "$work/broken.tape" > "$work/verify.out" 2>&1
check "verify of a tape missing one file's bytes exits 1" test $? = 1
check "  naming the record" grep -q 'file_read "tasks.txt"' "$work/verify.out"

# A program that reads one file and prints nothing: its sidecar holds that file's bytes only.
(cd "$work/ws" && "$td" run -q --emit-tape "$work/one.tape" -- "$python" -c 'open("tasks.txt").read()')
check "the one-file tape says what its sidecar keeps" grep -q '"keeps":\["file_bytes"' "$work/one.tape"
check "  and verifies" "$td" verify "$work/one.tape"
check "  its sidecar holds one entry" test "$(ls "$work/one.tape.cas" | wc -l)" = 1
mv "$work/one.tape.cas" "$work/one.cas.kept"
mkdir "$work/one.tape.cas"
"$td" verify "$work/one.tape" > "$work/verify.out" 2>&1
check "verify of it with its only file-bytes entry lost exits 1" test $? = 1
check "  naming the record" grep -q 'cas_missing: .*file_read \"tasks.txt\"' "$work/verify.out"
rmdir "$work/one.tape.cas"
"$td" verify --json "$work/one.tape" > "$work/verify.out" 2>&1
check "verify of it with its sidecar gone exits 1" test $? = 1
check "  naming the record" "$python" -c "
import json, sys
problems = json.load(open('$work/verify.out'))['problems']
sys.exit(not any(p['category'] == 'cas_missing' and 'tasks.txt' in p['message'] for p in problems))"
check "a reference vector naming a file by digest only still verifies" \
  "$td" verify "$vectors/canonical/all_kinds.tape"
check "  (it has no sidecar)" test ! -e "$vectors/canonical/all_kinds.tape.cas"

finish reference
