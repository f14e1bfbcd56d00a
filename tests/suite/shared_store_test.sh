#!/usr/bin/env bash
# A folder of tapes sharing one content store (DIR/.tapedeck-cas). Fifty recordings of a program
# that reads a file they all share and a file of its own are written into the folder: the store
# holds each distinct blob once and no tape has a sidecar of its own; `check` replays all fifty
# and passes them; `verify` follows the store. Ten tapes deleted, `gc --dry-run` removes nothing,
# and `gc` removes exactly the blobs only those ten named. A tape that cannot be read stops gc
# before anything is removed.
# Usage: shared_store_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
source "$(dirname "$0")/../harness.sh"

cat > "$work/program.py" <<'PY'
shared = open("shared.txt").read().strip()
task = open("task.txt").read().strip()
print(f"{task}: {shared}")
PY
mkdir -p "$work/ws" "$work/tapes/.tapedeck-cas"
echo "the same for every run" > "$work/ws/shared.txt"
for i in $(seq 1 50); do
  echo "task $i" > "$work/ws/task.txt"
  (cd "$work/ws" && "$td" run -q --emit-tape "$work/tapes/t$i.tape" -- "$python" "$work/program.py") \
    > /dev/null || fail "recording $i"
done

# The blobs each tape names that a run keeps (file bytes, printed output), as the tapes say.
named_by() {  # named_by TAPE...: one hash per line, distinct
  "$python" - "$@" <<'PY'
import json, sys
names = set()
for tape in sys.argv[1:]:
    for line in list(open(tape))[1:]:
        kind = json.loads(line)["kind"]
        if kind["kind"] in ("file_read", "file_write"):
            names.add(kind["content_hash"])
        elif kind["kind"] == "outcome":
            for stream in ("stdout", "stderr"):
                if kind[stream]["len_bytes"] > 0:
                    names.add(kind[stream]["content_hash"])
print("\n".join(sorted(names)))
PY
}
held() { ls "$work/tapes/.tapedeck-cas" | sort; }

check "no tape has a sidecar of its own" test -z "$(ls -d "$work"/tapes/*.cas 2> /dev/null)"
named_by "$work"/tapes/t*.tape > "$work/named.all"
check "the store holds each distinct blob the fifty tapes name, once ($(wc -l < "$work/named.all"))" \
  diff <(held) "$work/named.all"
check "  which is fewer than the tapes' references (the shared file is kept once)" \
  test "$(wc -l < "$work/named.all")" -lt 150
check "verify follows the store" "$td" verify "$work/tapes/t7.tape"
"$td" check -j 2 "$work/tapes" > "$work/check.out" 2>&1
check "check replays the fifty and passes them" test $? = 0
check "  all fifty" grep -q "50 passed" "$work/check.out"

for i in $(seq 1 10); do rm "$work/tapes/t$i.tape" "$work/tapes/t$i.tape.manifest"; done
named_by "$work"/tapes/t*.tape > "$work/named.kept"
gone=$(comm -23 "$work/named.all" "$work/named.kept" | wc -l)
check "the ten deleted tapes named blobs no other tape names ($gone)" test "$gone" -gt 0
"$td" gc --dry-run --json "$work/tapes" > "$work/gc.json"
check "gc --dry-run counts them" "$python" -c "
import json, sys; sys.exit(json.load(open('$work/gc.json'))['removed'] != $gone)"
check "  and removes nothing" diff <(held) "$work/named.all"
"$td" gc --json "$work/tapes" > "$work/gc.json"
check "gc removes exactly the blobs only the deleted tapes named" diff <(held) "$work/named.kept"
check "  and says how many" "$python" -c "
import json, sys; r = json.load(open('$work/gc.json')); sys.exit(r['removed'] != $gone or r['tapes'] != 40)"
check "the forty left still verify" "$td" verify "$work/tapes/t11.tape"

echo '{"type":"header","version":1' > "$work/tapes/broken.tape"
rm "$work/tapes/t11.tape"
"$td" gc "$work/tapes" > /dev/null 2> "$work/gc.err"
check "gc stops at a tape it cannot read (exit 2, one line)" \
  bash -c "[ $? = 2 ] && [ \$(wc -l < '$work/gc.err') = 1 ] && grep -q broken.tape '$work/gc.err'"
check "  before removing anything" diff <(held) "$work/named.kept"
"$td" gc "$work" > /dev/null 2> "$work/gc.err"
check "gc of a folder without a store is refused (exit 2)" test $? = 2

finish shared-store
