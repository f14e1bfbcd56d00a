#!/usr/bin/env bash
# A tape carries everything its replay needs: `fmt -o` to another folder takes the bytes of every
# file read with it, so a replay of the moved tape in a workspace whose files changed since still
# serves the recorded bytes and passes fidelity; `verify` names the record whose file bytes are
# missing from the sidecar (exit 1); `stats` counts them.
# Usage: references_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
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

finish reference
