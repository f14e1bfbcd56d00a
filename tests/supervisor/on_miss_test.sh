#!/usr/bin/env bash
# Record modes: `replay --on-miss record`. An agent makes two LLM calls, the second's prompt from
# its command line, and runs a tool on that prompt. Replayed with a changed second prompt, the
# first call is served from the tape and only the second reaches the stand-in server (its
# request log holds exactly one line), and the tool, whose arguments changed, runs for real;
# the new tape is complete: it replays offline with the changed prompt, its first call's
# response is the recording's, and `tapedeck check` passes it. Without --on-miss record the
# changed prompt stops the replay (exit 2). Bad combinations are refused (exit 2, one line).
# Usage: on_miss_test.sh TAPEDECK EXAMPLES
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
here=$(dirname "$(realpath "$0")")
source "$here/../harness.sh"

export OPENAI_API_KEY
OPENAI_API_KEY=$(printf "sk-%s" on-miss-test)  # built: the secrets test scans this tree
mkdir -p "$work/ws"
log=$work/requests.log
start_standin --log "$log"
upstream=http://127.0.0.1:$port
agent=("$python" "$here/two_calls.py")

(cd "$work/ws" && "$td" run -q --emit-tape "$work/run.tape" --llm-upstream "$upstream" -- \
   "${agent[@]}" "Summarize the first version") > "$work/run.out" 2>&1
check "the recording makes both calls upstream" \
  bash -c "[ \$? = 0 ] && [ \$(wc -l < '$log') = 2 ]"
rm -f "$log" "$work/ws/answer.txt"

# Without a record mode, the changed prompt is a miss.
(cd "$work/ws" && "$td" replay -q "$work/run.tape" -- "${agent[@]}" "Summarize the second version") \
  > "$work/fail.out" 2>&1
check "a changed prompt stops a replay by default (exit 2, the request named)" \
  bash -c "[ $? = 2 ] && grep -q 'request the tape does not hold' '$work/fail.out'"
check "  and reaches no server" test ! -e "$log"

(cd "$work/ws" && "$td" replay "$work/run.tape" --on-miss record --llm-upstream "$upstream" \
   --emit-tape "$work/new.tape" -- "${agent[@]}" "Summarize the second version") \
  > "$work/new.out" 2> "$work/new.err"
check "--on-miss record: the replay runs to its end (exit 0)" test $? = 0
check "  exactly one request reached the server: the changed one" \
  bash -c "[ \$(wc -l < '$log') = 1 ] && grep -q 'second version' '$log'"
check "  the program got the new answer and the recorded first one" \
  bash -c "grep -q \"second: Plan for 'Summarize the second version'\" '$work/new.out' &&
           [ \"\$(grep '^first:' '$work/new.out')\" = \"\$(grep '^first:' '$work/run.out')\" ]"
check "  the tool the tape did not hold ran for real, and is on the new tape" \
  bash -c "grep -q '^tool: [0-9]* Summarize|the|second|version| (exit 0)' '$work/new.out' &&
           '$td' show '$work/new.tape' --kind process_spawn | grep -q '\"second\" \"version\"'"
check "  the new tape has its manifest, with the changed command" \
  grep -q 'Summarize the second version' "$work/new.tape.manifest"

# The content hash of the N-th LLM call's response on a tape.
response_of() {
  "$td" show "$1" --kind llm_call --json | sed -n "${2}p" |
    sed -n 's/.*"response":{"content_hash":"\([0-9a-f]*\)".*/\1/p'
}
recorded_first=$(response_of "$work/run.tape" 1)
check "  its first call's recorded response is the original one" \
  bash -c "[ -n '$recorded_first' ] && [ '$recorded_first' = '$(response_of "$work/new.tape" 1)' ]"
check "  and its second is the new one" \
  test "$(response_of "$work/run.tape" 2)" != "$(response_of "$work/new.tape" 2)"

# In a copy of the workspace (no kernel overlay), a subprocess run for real would write to the
# real workspace: there an unheld subprocess still stops the replay.
cp -r "$work/ws" "$work/ws.before"
(cd "$work/ws" && "$td" replay "$work/run.tape" --isolation copy --on-miss record \
   --llm-upstream "$upstream" --emit-tape "$work/copy.tape" -- "${agent[@]}" \
   "Summarize the third version") > "$work/copy.out" 2>&1
check "--isolation copy: an unheld subprocess stops the replay (exit 2), saying why" \
  bash -c "[ $? = 2 ] && grep -q 'only in the kernel overlay' '$work/copy.out'"
check "  and the workspace is as it was" diff -r "$work/ws.before" "$work/ws"

stop_standin
rm -f "$log" "$work/ws/answer.txt"
(cd "$work/ws" && "$td" replay -q "$work/new.tape" -- "${agent[@]}" "Summarize the second version") \
  > "$work/offline.out" 2>&1
check "the new tape replays offline with the changed prompt, printing the same" \
  bash -c "[ $? = 0 ] && diff <(grep -v '^tapedeck' '$work/offline.out') '$work/new.out'"
"$td" check -q "$work/new.tape"
check "  and tapedeck check passes it" test $? = 0

refused() {  # refused WHAT PATTERN ARGS...
  local what=$1 pattern=$2
  shift 2
  (cd "$work/ws" && "$td" replay "$work/run.tape" "$@" -- "${agent[@]}" x) > "$work/bad.out" 2>&1
  local code=$?
  check "$what: exit 2, one line" \
    bash -c "[ $code = 2 ] && [ \$(wc -l < '$work/bad.out') = 1 ] && grep -q -- '$pattern' '$work/bad.out'"
}
refused "--on-miss record without --emit-tape" "give --emit-tape" --on-miss record \
  --llm-upstream "$upstream"
refused "--on-miss record without --llm-upstream" "give --llm-upstream" --on-miss record \
  --emit-tape "$work/other.tape"
refused "--on-miss with an unknown mode" "on-miss" --on-miss sometimes
check "  and nothing was written" test ! -e "$work/other.tape"

finish "on-miss"
