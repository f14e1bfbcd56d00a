#!/usr/bin/env bash
# A streamed answer reaches a replayed program in the pieces its reads took in the recording
# (llm_call's "joined"). A raw-socket client counts the reads that bring it the whole answer.
# Recorded reading late (every event, and the stream's end, already waiting when it first
# reads), the tape says all came in one piece, and a replay hands them over as one: a client
# that reads at once takes the whole answer in a single read, where an answer handed over an
# event at a time would take one read per event. Recorded reading as the events come, the tape
# has no joins, and a replay takes as many reads as the recording did.
# Usage: stream_pieces_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
source "$(dirname "$0")/../harness.sh"
cat > "$work/reads.py" <<'PY'
import os, socket, sys, time, urllib.parse
base = urllib.parse.urlparse(os.environ["OPENAI_BASE_URL"])
body = (b'{"model":"standin-1","stream":true,'
        b'"messages":[{"role":"user","content":"Count the reads of this answer."}]}')
connection = socket.create_connection((base.hostname, base.port))
connection.sendall(b"POST %s/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                   b"\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
                   % (base.path.rstrip("/").encode(), os.environ["OPENAI_API_KEY"].encode(),
                      len(body)) + body)
if sys.argv[1] == "late":
    time.sleep(1.5)  # the whole answer is waiting by now
answer, reads = b"", 0
while not answer.endswith(b"0\r\n\r\n"):
    piece = connection.recv(1 << 20)
    if not piece:
        break
    answer, reads = answer + piece, reads + 1
print("events", answer.count(b"data: "), "reads", reads)
PY
mkdir -p "$work/ws" && cd "$work/ws"
export OPENAI_API_KEY
OPENAI_API_KEY=$(printf "sk-%s" tapedeck-test-placeholder)
start_standin --chunk-ms 20
for how in late prompt; do
  "$td" run -q --emit-tape "$work/$how.tape" --llm-upstream "http://127.0.0.1:$port" \
    -- "$python" "$work/reads.py" "$how" > "$work/$how.rec" 2> "$work/$how.err"
  check "$how: recorded (exit 0)" test $? = 0
done
stop_standin
events=$(sed -n 's/^events \([0-9]*\) .*/\1/p' "$work/late.rec")
check "late: the recording read every event ($events) in one read" grep -q "^events [1-9][0-9]* reads 1$" "$work/late.rec"
check "late: the tape says each event and the end came with the one before" \
  grep -q "\"joined\":\[$(seq -s, 0 "$events")\]" "$work/late.tape"
"$td" replay -q "$work/late.tape" -- "$python" "$work/reads.py" prompt > "$work/late.rep" 2>> "$work/late.err"
check "late: a replay read by a prompt client exits 0" test $? = 0
check "late: ... and hands it the whole answer in one read, as recorded ($(cat "$work/late.rep"))" \
  grep -q "^events $events reads 1$" "$work/late.rep"
reads=$(sed -n 's/.* reads //p' "$work/prompt.rec")
check "prompt: the recording took the answer in several reads ($reads)" test "${reads:-0}" -gt 2
check "prompt: the tape joins nothing" bash -c "! grep -q '\"joined\"' '$work/prompt.tape'"
"$td" replay -q "$work/prompt.tape" -- "$python" "$work/reads.py" prompt > "$work/prompt.rep" 2>> "$work/prompt.err"
check "prompt: a replay takes as many reads as the recording ($(cat "$work/prompt.rep"))" \
  cmp -s "$work/prompt.rec" "$work/prompt.rep"
finish "stream pieces"
