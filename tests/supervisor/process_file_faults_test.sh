#!/usr/bin/env bash
# tapedeck replay --fault on subprocesses and files, with the example Python agent (it runs
# `wc -w tasks.txt` and reads tasks.txt), recorded once and replayed offline:
#   process#1=exit:3           its parent sees exit 3, with the recorded output
#   process:wc#1=signal:KILL   its parent sees it killed (-9), with no output, at once
#   process:nosuch#1, process#2 (there is one subprocess): nothing struck, the replay is the
#                              recording's
#   file:tasks.txt=enoent, eacces, eio   the agent's open fails with that errno
# Each faulted replay is the same twice, its tape holds a process_fault or file_fault record
# naming the spec, and semantic fidelity names the divergence. (LLM faults:
# tests/proxy/faults_test.sh; programs the floor serves: tests/floor/served_test.sh.)
# Usage: process_file_faults_test.sh TAPEDECK EXAMPLES
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
source "$(dirname "$0")/../harness.sh"

export OPENAI_API_KEY
OPENAI_API_KEY=$(printf "sk-%s" faults-test)  # built: the secrets test scans this tree
agent=("$python" "$examples/agents/agent.py")
fresh() { rm -rf "$work/ws" && cp -r "$examples/agents/workspace" "$work/ws"; }

start_standin
fresh
(cd "$work/ws" && "$td" run -q --emit-tape "$work/run.tape" \
   --llm-upstream "http://127.0.0.1:$port" -- "${agent[@]}") > "$work/run.out" 2>&1
check "recorded (exit 0)" test $? = 0
stop_standin

# faulted NAME SPEC...: two replays with these faults, into $work/NAME.{1,2}.{out,tape}
faulted() {
  local name=$1 round
  shift
  local specs=()
  for spec in "$@"; do specs+=(--fault "$spec"); done
  for round in 1 2; do
    fresh
    (cd "$work/ws" && "$td" replay -q "$work/run.tape" --emit-tape "$work/$name.$round.tape" \
       "${specs[@]}" -- "${agent[@]}") > "$work/$name.$round.out" 2> "$work/$name.$round.err"
    echo $? > "$work/$name.$round.code"
  done
  # stdout and stderr apart: the order of lines between the two streams is not kept.
  check "$name: the same output on two replays" \
    bash -c "diff '$work/$name.1.out' '$work/$name.2.out' && diff '$work/$name.1.err' '$work/$name.2.err'"
}
struck() {  # struck NAME KIND SPEC: the replay's tape holds the fault, and fidelity names it
  check "$1: its tape holds a $2 record naming '$3'" \
    grep -qF "\"kind\":\"$2\",\"fault\":\"$3\"" "$work/$1.1.tape"
  check "$1: semantic fidelity's first divergence is the fault" \
    bash -c "'$td' fidelity '$work/run.tape' '$work/$1.1.tape' | grep -q 'kind_mismatch: recorded [a-z_]*, replay $2'"
}

faulted exit 'process#1=exit:3'
check "process#1=exit:3: the parent sees exit 3 and the recorded output" \
  grep -q "^tool says: 13 tasks.txt (exit 3)" "$work/exit.1.out"
struck exit process_fault 'process#1=exit:3'

faulted kill 'process:wc#1=signal:KILL'
check "process:wc#1=signal:KILL: the parent sees it killed, with no output" \
  grep -q "^tool says:  (exit -9)" "$work/kill.1.out"
struck kill process_fault 'process:wc#1=signal:KILL'

faulted none 'process:nosuch#1=exit:1' 'process#2=exit:1'
check "faults on subprocesses that never start strike nothing: the recording's output" \
  diff <(grep -v "^tapedeck" "$work/run.out") <(cat "$work/none.1.out" "$work/none.1.err")
check "  and no fault on the tape" bash -c "! grep -q '_fault\"' '$work/none.1.tape'"

for effect in enoent:FileNotFoundError eacces:PermissionError 'eio:OSError: \[Errno 5\]'; do
  name=${effect%%:*}
  faulted "$name" "file:tasks.txt=$name"
  check "file:tasks.txt=$name: the agent's open fails (${effect#*:})" \
    bash -c "grep -q '${effect#*:}' '$work/$name.1.err' && [ \$(cat '$work/$name.1.code') = 1 ]"
  struck "$name" file_fault "file:tasks.txt=$name"
done

finish "process and file faults"
