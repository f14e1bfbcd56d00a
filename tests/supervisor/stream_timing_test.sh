#!/usr/bin/env bash
# Time around I/O: a Python program (httpx, as agents use it) streams an answer whose events the
# stand-in spaces 50 ms apart, and prints when each event came and how long the whole answer
# took. Recorded against the stand-in, then replayed twice with it stopped: both replays print
# the recorded times (the call cuts the clock where its request is sent, in both modes, and a
# replay hands the events over one read at a time).
# Usage: stream_timing_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
source "$(dirname "$0")/../harness.sh"
if ! "$python" -c "import httpx" 2>/dev/null; then
  echo "skipped: $python has no httpx (scripts/install-deps.sh installs python3-httpx)"
  exit 77
fi
cat > "$work/stream.py" <<'PY'
import json, os, time
import httpx
base = os.environ["OPENAI_BASE_URL"].rstrip("/")
body = {"model": "standin-1", "stream": True,
        "messages": [{"role": "user", "content": "Tell a long story about a tape deck, please."}]}
started = time.monotonic()
pieces, stamps = [], []
with httpx.stream("POST", base + "/chat/completions", json=body, timeout=30,
                  headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}) as answer:
    for line in answer.iter_lines():
        line = line.strip()
        if line.startswith("data: {"):
            pieces.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
            stamps.append(int((time.monotonic() - started) * 1000))
print("events", len(pieces), "at_ms", stamps)
print("elapsed_ms", int((time.monotonic() - started) * 1000))
PY
mkdir -p "$work/ws" && cd "$work/ws"
start_standin --chunk-ms 50
OPENAI_API_KEY=sk-tapedeck-test-secret "$td" run -q --emit-tape "$work/stream.tape" --llm-upstream "http://127.0.0.1:$port" \
  -- "$python" "$work/stream.py" > "$work/rec.out" 2> "$work/err"
check "recorded (exit 0)" test $? = 0
stop_standin
elapsed=$(sed -n 's/^elapsed_ms //p' "$work/rec.out")
check "the recording took the stand-in's pace (5 pauses of 50 ms: over 250 ms)" \
  test "${elapsed:-0}" -ge 250
for i in 1 2; do
  OPENAI_API_KEY=sk-tapedeck-test-secret "$td" replay -q "$work/stream.tape" -- "$python" "$work/stream.py" > "$work/rep$i.out" 2>> "$work/err"
  check "replay $i: exit 0" test $? = 0
  check "replay $i prints the recorded times of every event and the total" diff "$work/rec.out" "$work/rep$i.out"
done
finish "stream timing"
