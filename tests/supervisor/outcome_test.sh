#!/usr/bin/env bash
# The run's outcome is on the tape: what the program printed, its exit code and the workspace it
# left. A replay of an unchanged program passes `semantic` and `outcome`; a replay of the program
# changed to print one more line, to exit with another code, or to write other bytes to a
# workspace file fails `outcome` (exit 1) with a divergence naming stdout, the exit code or the
# file. A program whose stdout is a terminal still sees one (isatty) under run and replay.
# Usage: outcome_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
source "$(dirname "$0")/../harness.sh"

# The program lives outside the workspace: a changed program is not a changed input.
write_program() {  # write_program EXTRA_LINE EXIT_CODE FILE_BYTES
  cat > "$work/program.py" <<PY
import sys
print("the answer is 42")
print("a warning", file=sys.stderr)
$1
open("result.txt", "w").write("$3")
sys.exit($2)
PY
}
fresh() { rm -rf "$work/ws" && mkdir "$work/ws"; }

write_program "" 0 "bytes"
fresh
(cd "$work/ws" && "$td" run -q --emit-tape "$work/run.tape" -- "$python" "$work/program.py") \
  > "$work/run.out" 2> "$work/run.err"
check "the recording exits with the program's code" test $? = 0
check "  and passes its stdout and stderr through" \
  bash -c "grep -q 'the answer is 42' '$work/run.out' && grep -q 'a warning' '$work/run.err'"
check "the outcome is the tape's last record, in runtime_finalize" \
  bash -c "tail -1 '$work/run.tape' | grep -q '\"phase\":\"runtime_finalize\".*\"kind\":\"outcome\",\"exit_code\":0'"

check "tapedeck show reads the outcome" \
  bash -c "'$td' show '$work/run.tape' | grep -q 'outcome  *program exit 0, stdout 17 B'"
check "  and the run's entropy seed" bash -c "'$td' show '$work/run.tape' | grep -q 'entropy  *seed '"

replay_as() {  # replay_as NAME: replays the tape with the program as it is now
  fresh
  (cd "$work/ws" && "$td" replay -q "$work/run.tape" --emit-tape "$work/$1.tape" -- \
     "$python" "$work/program.py") > /dev/null 2>&1
  "$td" fidelity "$work/run.tape" "$work/$1.tape" --mode outcome > "$work/$1.fidelity"
}

replay_as same
check "an unchanged replay passes outcome" test $? = 0
check "  and semantic" "$td" fidelity "$work/run.tape" "$work/same.tape" --mode semantic

write_program 'print("one more line")' 0 "bytes"
replay_as more
check "one more line printed: outcome fails" test $? = 1
check "  naming stdout" grep -q "outcome_stdout" "$work/more.fidelity"

write_program "" 3 "bytes"
replay_as code
check "another exit code: outcome fails" test $? = 1
check "  naming the exit code" grep -q "outcome_exit_code.*recorded 0, replay 3\|the program's exit code: recorded 0, replay 3" "$work/code.fidelity"

write_program "" 0 "other bytes"
replay_as file
check "other bytes in a workspace file: outcome fails" test $? = 1
check "  naming the file" grep -q 'final content of "result.txt"' "$work/file.fidelity"

# A terminal stays a terminal (script(1) gives the run one).
cat > "$work/tty.py" <<'PY'
import sys
print("stdout is a terminal:", sys.stdout.isatty())
PY
fresh
(cd "$work/ws" && script -qec "'$td' run -q --emit-tape '$work/tty.tape' -- '$python' '$work/tty.py'" /dev/null) \
  > "$work/tty-run.out" 2>&1
check "run: a terminal stays a terminal" grep -q "stdout is a terminal: True" "$work/tty-run.out"
fresh
(cd "$work/ws" && script -qec "'$td' replay -q '$work/tty.tape' -- '$python' '$work/tty.py'" /dev/null) \
  > "$work/tty-replay.out" 2>&1
check "replay: likewise" grep -q "stdout is a terminal: True" "$work/tty-replay.out"

finish outcome
