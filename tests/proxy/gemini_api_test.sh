#!/usr/bin/env bash
# Google's Gemini API through the proxy, as Gemini CLI calls it: gemini_client.py takes its base URL
# from GOOGLE_GEMINI_BASE_URL and sends its key in an x-goog-api-key header, asks for a JSON answer
# and for a streamed one. Recorded against the stand-in (which refuses a call without a key), then
# replayed with it stopped: the same output, and the key nowhere on the tape or its sidecar.
# Usage: gemini_api_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
key=$(printf "AIza%s" SyTapedeckTestPlaceholder0000000000)
export GEMINI_API_KEY=$key

mkdir -p "$work/ws" && cd "$work/ws"
start_standin
"$td" run -q --emit-tape "$work/gemini.tape" --llm-upstream "http://127.0.0.1:$port" -- \
  "$python" "$here/gemini_client.py" > "$work/rec.out" 2> "$work/rec.err"
check "recorded (exit 0)" test $? = 0
stop_standin
check "the JSON answer fits the schema asked for" grep -q '^json: {"next_speaker": "user"' "$work/rec.out"
check "the streamed answer came in several events" grep -qE '^streamed in ([2-9]|[1-9][0-9]+) events: Plan for' "$work/rec.out"
check "the tape holds both calls" test "$(grep -c '"kind":"llm_call"' "$work/gemini.tape")" = 2
check "the key is nowhere on the tape or its sidecar" \
  bash -c "! grep -rqF '$key' '$work/gemini.tape' '$work/gemini.tape.cas'"
"$td" replay -q "$work/gemini.tape" -- "$python" "$here/gemini_client.py" > "$work/rep.out" 2> "$work/rep.err"
check "replayed offline (exit 0)" test $? = 0
check "the replay printed what the recording printed" cmp "$work/rec.out" "$work/rep.out"
finish "gemini api"
