#!/usr/bin/env bash
# Compressed tapes end to end. A program recorded with `--emit-tape NAME.tape.zst` writes zstd
# frames that every command reads as it reads a plain tape: verify, stats, show, scan, view, fmt,
# fidelity, replay (which writes its own tape compressed) and check (which finds *.tape.zst in a
# folder). A recording killed with SIGKILL leaves a tape whose flushed records all read, which
# `verify` reports as torn and `verify --repair` closes with every whole record kept.
# Usage: compressed_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
source "$(dirname "$0")/../harness.sh"

# (Its clock is not printed: what this test is about is the tape's form, not the clock's serving,
# which the timing tests hold.)
cat > "$work/agent.py" <<'PY'
import time, uuid
notes = open("notes.txt").read().strip()
for turn in range(3):
    time.sleep(0.05)
    print(turn, notes, uuid.uuid4())
open("out.txt", "w").write("done\n")
PY
mkdir "$work/ws" && echo "three turns" > "$work/ws/notes.txt"
(cd "$work/ws" && "$td" run -q --emit-tape "$work/tapes/run.tape.zst" -- "$python" "$work/agent.py") \
  > "$work/run.out"
check "the recording is a zstd stream" test "$(head -c4 "$work/tapes/run.tape.zst" | od -An -tx1 | tr -d ' ')" = 28b52ffd
check "  that the zstd tool reads whole" zstd -q -t "$work/tapes/run.tape.zst"
check "  beside its sidecar and manifest under the plain name" \
  test -d "$work/tapes/run.tape.cas" -a -f "$work/tapes/run.tape.manifest"
zstd -q -dc "$work/tapes/run.tape.zst" > "$work/plain.tape"
check "  and smaller than its plain form" \
  test "$(stat -c %s "$work/tapes/run.tape.zst")" -lt "$(stat -c %s "$work/plain.tape")"

check "verify reads it" "$td" verify "$work/tapes/run.tape.zst"
"$td" stats --json "$work/tapes/run.tape.zst" > "$work/stats.json"
check "stats counts what the plain form holds" "$python" -c "
import json, sys
records = json.load(open('$work/stats.json'))['records']
sys.exit(records != sum(1 for line in open('$work/plain.tape') if line.strip()) - 1)"
check "show finds its file read" bash -c "'$td' show '$work/tapes/run.tape.zst' | grep -q notes.txt"
check "scan reads it" "$td" scan "$work/tapes/run.tape.zst"
check "view draws it" "$td" view "$work/tapes/run.tape.zst" -o "$work/view.html"
"$td" fmt "$work/tapes/run.tape.zst" > "$work/fmt.out" 2> /dev/null
check "fmt to stdout gives the plain canonical bytes" cmp "$work/fmt.out" "$work/plain.tape"

(cd "$work/ws" && "$td" replay -q "$work/tapes/run.tape.zst" --emit-tape "$work/replay.tape.zst" -- \
  "$python" "$work/agent.py") > "$work/replay.out"
check "a replay of it prints what the recording printed" diff "$work/run.out" "$work/replay.out"
check "  its own tape is compressed too" zstd -q -t "$work/replay.tape.zst"
check "  and passes semantic fidelity" \
  "$td" fidelity "$work/tapes/run.tape.zst" "$work/replay.tape.zst" --mode semantic
check "check finds the compressed tape in a folder and passes it" \
  bash -c "'$td' check '$work/tapes' > '$work/check.out' 2>&1 && grep -q 'run.tape.zst' '$work/check.out'"

# Killed mid-recording: the frame is left open, every flushed record reads.
cat > "$work/long.py" <<'PY'
import sys, time
for i in range(400):
    time.sleep(0.01)
    print(i, time.time(), flush=True)
PY
(cd "$work/ws" && exec "$td" run -q --emit-tape "$work/killed.tape.zst" -- "$python" "$work/long.py") \
  > "$work/long.out" 2> /dev/null &
recorder=$!
for _ in $(seq 100); do [ "$(wc -l < "$work/long.out")" -ge 100 ] && break; sleep 0.05; done
sleep 0.3  # past a flush (every 100 ms)
kill -KILL "$recorder"
wait "$recorder" 2> /dev/null
pkill -KILL -f "$work/long.py" 2> /dev/null
"$td" verify "$work/killed.tape.zst" > "$work/verify.out" 2>&1
check "verify of a killed compressed recording exits 1" test $? = 1
check "  reporting its torn tail" grep -q torn_tail "$work/verify.out"
before=$("$td" stats --json "$work/killed.tape.zst" 2> /dev/null | "$python" -c 'import json,sys; print(json.load(sys.stdin)["records"])')
check "  with the flushed records readable ($before)" test "$before" -ge 100
check "verify --repair repairs it" "$td" verify --repair "$work/killed.tape.zst"
check "  after which it verifies" "$td" verify "$work/killed.tape.zst"
check "  the zstd tool reads it whole" zstd -q -t "$work/killed.tape.zst"
after=$("$td" stats --json "$work/killed.tape.zst" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["records"])')
check "  and it kept every record that was readable ($after of $before)" test "$after" = "$before"

finish compressed
