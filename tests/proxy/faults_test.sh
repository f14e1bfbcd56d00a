#!/usr/bin/env bash
# tapedeck replay --fault on the official OpenAI Node SDK, recorded once against the stand-in and
# replayed offline with a fault per run:
#   llm#1=429, 500, reset, timeout   the SDK retries on its own and prints the recorded answer;
#   llm#*=…                           every attempt faulted: the SDK gives up (its error named),
#                                     the same on every replay;
#   llm#1=cut@2                       a streamed answer ends after two events; fidelity --mode
#                                     outcome reports the difference;
#   llm#1=slow@400                    its events 400 ms further apart on the program's clock;
# each faulted replay's tape holds an llm_fault record where the fault struck (each retry's
# backoff taped as a wait); bad specs are refused with one line naming them and exit 2, and
# nothing is written.
# Usage: faults_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
source "$(dirname "$0")/../harness.sh"
sdk=$(realpath "$(dirname "$0")")
[ -d "$sdk/node_modules/openai" ] ||
  { echo "FAIL: the openai package is missing from $sdk (scripts/install-deps.sh runs npm ci)"; exit 1; }
# The SDK insists on a key; the stand-in and the tape never need one.
export OPENAI_API_KEY
OPENAI_API_KEY=$(printf "sk-%s" tapedeck-test-placeholder)

mkdir -p "$work/ws" && cd "$work/ws"
start_standin
for mode in plain stream; do
  "$td" run -q --emit-tape "$work/$mode.tape" --llm-upstream "http://127.0.0.1:$port" -- \
    node "$sdk/fault_agent.mjs" "$mode" > "$work/$mode.rec" 2> "$work/$mode.err"
  check "$mode: recorded (exit 0)" test $? = 0
done
stop_standin
recorded_answer=$(cat "$work/plain.rec")
check "plain: the recording has the answer" grep -q "^plain: " "$work/plain.rec"

# replay MODE SPEC NAME: replays MODE's tape with --fault SPEC into $work/NAME.{out,tape}.
replay() {
  "$td" replay -q "$work/$1.tape" --emit-tape "$work/$3.tape" --fault "$2" -- \
    node "$sdk/fault_agent.mjs" "$1" > "$work/$3.out" 2>> "$work/$3.err"
}
faults_on() { grep -c '"kind":"llm_fault"' "$1"; }

for effect in 429 500 reset timeout; do
  replay plain "llm#1=$effect" "one-$effect"
  check "llm#1=$effect: exit 0" test $? = 0
  check "llm#1=$effect: the SDK retried and printed the recorded answer" \
    test "$(cat "$work/one-$effect.out")" = "$recorded_answer"
  check "llm#1=$effect: one llm_fault on the replay's tape" test "$(faults_on "$work/one-$effect.tape")" = 1
done
check "llm#1=429: the backoff before the retry is taped as a wait (skipped, not slept)" \
  grep -q '"waited":true' "$work/one-429.tape"

declare -A gave_up=([429]="RateLimitError 429" [500]="InternalServerError 500"
                    [reset]="APIConnectionError" [timeout]="APIConnectionTimeoutError")
for effect in 429 500 reset timeout; do
  for round in 1 2; do
    replay plain "llm#*=$effect" "every-$effect-$round"
    check "llm#*=$effect replay $round: the SDK gave up with ${gave_up[$effect]}" \
      grep -q "^gave up: ${gave_up[$effect]} *\$" "$work/every-$effect-$round.out"
  done
  check "llm#*=$effect: the same output on every replay" \
    cmp -s "$work/every-$effect-1.out" "$work/every-$effect-2.out"
  check "llm#*=$effect: the first attempt and each retry faulted" \
    test "$(faults_on "$work/every-$effect-1.tape")" -ge 2
done

replay stream "llm#1=cut@2" cut
check "cut@2: the stream ended after two events" grep -q "^streamed (2 events" "$work/cut.out"
"$td" fidelity "$work/stream.tape" "$work/cut.tape" --mode outcome > "$work/cut.fid"
check "cut@2: fidelity --mode outcome reports the difference (exit 1)" test $? = 1
check "cut@2: ... on stdout" grep -q "outcome_stdout" "$work/cut.fid"
"$td" fidelity "$work/stream.tape" "$work/cut.tape" --mode semantic > "$work/cut.sem"
check "cut@2: semantic fidelity names the fault as the first divergence" \
  grep -q "replay llm_fault" "$work/cut.sem"

recorded_events=$(grep -o "^streamed ([0-9]*" "$work/stream.rec" | grep -o "[0-9]*$")
recorded_spread=$(grep -o "over [0-9.]* s" "$work/stream.rec" | grep -o "[0-9.]*")
# 400 ms more between each two events than the recording had, on the program's clock (a little
# more may pass: the stream's end is an event too, and past the recorded reads a replay's clock
# goes at the real pace).
replay stream "llm#1=slow@400" slow
spread=$(grep -o "over [0-9.]* s" "$work/slow.out" | grep -o "[0-9.]*")
check "slow@400: every event arrived" grep -q "^streamed ($recorded_events events" "$work/slow.out"
check "slow@400: the events came 400 ms further apart on the program's clock (${spread:-no} s)" \
  awk -v got="${spread:-0}" -v was="$recorded_spread" -v n="$recorded_events" \
    'BEGIN {want = was + (n - 1) * 0.4; exit !(got >= want - 0.15 && got <= want + 0.6)}'

# Bad specs: one line naming the spec and what is wrong, exit 2, and no tape written.
for spec in 'llm#0=429' 'llm#1=200' 'llm#1=exit:3' 'llm#x=429' 'llm#1' 'model#1=429' \
            'llm#1=cut@' 'process#1=enoent' 'file:/etc/passwd=enoent'; do
  "$td" replay -q "$work/plain.tape" --emit-tape "$work/bad.tape" --fault "$spec" -- \
    node "$sdk/fault_agent.mjs" plain > "$work/bad.out" 2> "$work/bad.err"
  status=$?
  check "--fault '$spec' is refused with exit 2" test $status = 2
  check "--fault '$spec': one line naming it" \
    bash -c "[ \$(wc -l < '$work/bad.err') = 1 ] && grep -qF -- \"'$spec'\" '$work/bad.err'"
  check "--fault '$spec': no tape written, the program not run" \
    bash -c "[ ! -e '$work/bad.tape' ] && [ ! -s '$work/bad.out' ]"
done
finish faults
