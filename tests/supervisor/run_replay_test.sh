#!/usr/bin/env bash
# End to end: unmodified programs (bash, python3, C) recorded under `tapedeck run` against the
# stand-in LLM server, then replayed with the server gone and the network closed: the replay's
# stdout must equal the recording's, the workspace must be untouched, and `tapedeck fidelity`
# must pass (semantic: the recording's clock stamps are real time, a replay's are virtual).
# Then the ways a replay must refuse: inputs the tape does not hold, static binaries, bad flags.
# Usage: run_replay_test.sh TAPEDECK C_AGENT EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
c_agent=$(realpath "$2")
examples=$(realpath "$3")
agents=$examples/agents
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
work=$(mktemp -d)
standin_pid=
cleanup() {
  [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; else fail "$what"; fi; }

fresh_workspace() { rm -rf "$work/ws" && cp -r "$agents/workspace" "$work/ws"; }

start_standin() {
  # The last stand-in's "listening on" must not be read before this one's shell truncates the
  # file: a script that starts it twice then called a port nothing listened on.
  rm -f "$work/standin.out"
  "$python" "$agents/standin_llm.py" > "$work/standin.out" &
  standin_pid=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$work/standin.out" 2>/dev/null && break
    sleep 0.1
  done
  standin_port=$(sed -n 's/listening on //p' "$work/standin.out")
  [ -n "$standin_port" ] || { echo "the stand-in LLM server did not start" >&2; exit 1; }
}
stop_standin() { kill "$standin_pid"; wait "$standin_pid" 2>/dev/null; standin_pid=; }

kinds() { "$td" stats "$1" --json; }
count_kind() { kinds "$1" | "$python" -c "import json,sys; print(json.load(sys.stdin)['by_kind'].get('$2', 0))"; }

# record_and_replay NAME EXPECTED_EXIT PROGRAM... : record against the stand-in, replay offline.
record_and_replay() {
  local name=$1 expected_exit=$2; shift 2
  local dir=$work/$name
  mkdir -p "$dir"
  start_standin
  fresh_workspace
  (cd "$work/ws" && OPENAI_API_KEY=sk-tapedeck-test-secret "$td" run --emit-tape "$dir/run.tape" \
     --llm-upstream "http://127.0.0.1:$standin_port" -- "$@" > "$dir/run.out" 2> "$dir/run.err")
  local recorded_exit=$?
  stop_standin
  check "$name: the recording exits with the program's code ($expected_exit)" \
    test "$recorded_exit" = "$expected_exit"
  fresh_workspace
  (cd "$work/ws" && OPENAI_API_KEY=sk-tapedeck-test-secret "$td" replay "$dir/run.tape" \
     --emit-tape "$dir/replay.tape" -- "$@" > "$dir/replay.out" 2> "$dir/replay.err")
  local replay_exit=$?
  check "$name: the replay exits with the same code" test "$replay_exit" = "$expected_exit"
  check "$name: the recording printed the agent's output" test -s "$dir/run.out"
  check "$name: the replay's stdout equals the recording's" diff "$dir/run.out" "$dir/replay.out"
  check "$name: the replay left the workspace as it found it" \
    diff -r "$agents/workspace" "$work/ws"
  check "$name: tapedeck fidelity --mode semantic passes" \
    "$td" fidelity "$dir/run.tape" "$dir/replay.tape" --mode semantic
  check "$name: the API key is nowhere on the tape" \
    bash -c "! grep -rq sk-tapedeck-test-secret '$dir/run.tape' '$dir/run.tape.cas' 2>/dev/null"
  check "$name: the tape verifies" "$td" verify "$dir/run.tape"
  if [ "$failures" -gt 0 ]; then
    echo "--- $name run.err"; cat "$dir/run.err"; echo "--- $name replay.err"; cat "$dir/replay.err"
  fi
}

# ---- python3: every effect, the LLM plain and streamed --------------------------------------
record_and_replay python 0 "$python" "$agents/agent.py"
tape=$work/python/run.tape
check "python: two LLM calls taped" test "$(count_kind "$tape" llm_call)" = 2
check "python: the subprocess taped" test "$(count_kind "$tape" process_spawn)" -ge 1
check "python: the back-off sleep taped" test "$(count_kind "$tape" clock_sleep)" -ge 1
for kind in file_read file_write file_delete clock_read; do
  check "python: $kind taped" test "$(count_kind "$tape" "$kind")" -ge 1
done
check "python: the replay answered the streamed call chunk by chunk" \
  grep -q "summary (6 events)" "$work/python/replay.out"
check "python: the replay listed the folder it made and the file it renamed, all in the overlay" \
  grep -q "out/: \['report.md'\]" "$work/python/replay.out"

# ---- bash: the LLM over /dev/tcp, subprocesses, files ----------------------------------------
record_and_replay bash 0 bash "$agents/agent.sh"
tape=$work/bash/run.tape
check "bash: the LLM call taped" test "$(count_kind "$tape" llm_call)" = 1
check "bash: date, wc and sleep taped as subprocesses" test "$(count_kind "$tape" process_spawn)" -ge 3
check "bash: the redirections' reads and writes taped" test "$(count_kind "$tape" file_write)" -ge 1

# ---- C: every libc entry point ---------------------------------------------------------------
record_and_replay c 3 "$c_agent"
tape=$work/c/run.tape
check "C: fork+execvp, posix_spawnp, system and popen taped" \
  test "$(count_kind "$tape" process_spawn)" -ge 4
check "C: nanosleep and usleep taped" test "$(count_kind "$tape" clock_sleep)" = 2
# (The written file was not there before: a file_delete marked found says so, before the write.)
check "C: fopen write and unlink taped, the file as found before" \
  test "$(count_kind "$tape" file_write)" = 1 -a "$(count_kind "$tape" file_delete)" = 2 -a \
  "$(grep -c '"kind":"file_delete".*"found":true' "$tape")" = 1
check "C: the connect to the internet was denied, by name" \
  grep -q "network denied: connect to 192.0.2.1:443" "$work/c/run.err"

# ---- node: the official OpenAI SDK (npm openai, installed in tests/proxy) as the program ------
sdk_dir=$(realpath "$examples/../tests/proxy")
if [ -d "$sdk_dir/node_modules/openai" ]; then
  record_and_replay node 0 node "$sdk_dir/sdk_agent.mjs"
  check "node: both SDK calls taped" test "$(count_kind "$work/node/run.tape" llm_call)" = 2
  check "node: the stream came back in events" grep -q "streamed ([0-9]* events)" "$work/node/replay.out"
else
  fail "node: the openai package is missing from $sdk_dir (scripts/install-deps.sh runs npm ci there)"
fi

# ---- a replay that meets what the tape does not hold stops, naming what it expected ----------
fresh_workspace
(cd "$work/ws" && "$td" replay "$work/c/run.tape" -- bash -c 'uname -a; echo unreachable') \
  > "$work/miss.out" 2> "$work/miss.err"
check "miss: a subprocess the tape does not hold exits 2" test $? = 2
check "miss: the message names the record it expected" \
  grep -q "replay stopped: .*uname -a.*does not hold.*expected\|replay stopped: .*uname -a.*next recorded one is seq" "$work/miss.err"
check "miss: the program stopped there" bash -c "! grep -q unreachable '$work/miss.out'"
# A long command: one line says where it differs from the nearest recorded one; --json carries
# both whole.
long_arg=$(printf 'x%.0s' $(seq 3000))
(cd "$work/ws" && "$td" replay "$work/c/run.tape" -- bash -c "uname -a $long_arg; echo unreachable") \
  > /dev/null 2> "$work/long_miss.err"
check "miss: a long command's miss is told in under 1 KB ($(wc -c < "$work/long_miss.err") bytes)" \
  test "$(wc -c < "$work/long_miss.err")" -lt 1024
(cd "$work/ws" && "$td" replay --json "$work/c/run.tape" -- bash -c "uname -a $long_arg; echo unreachable") \
  > /dev/null 2> "$work/long_miss.json"
check "miss: --json carries the command whole" "$python" -c "
import json, sys
summary = json.loads(open('$work/long_miss.json').read().strip().splitlines()[-1])
sys.exit(0 if summary['miss_wanted'].count('x') >= 3000 and summary['miss_recorded'] else 1)"
(cd "$work/ws" && "$td" replay "$work/python/run.tape" -- "$python" -c "
import os, urllib.request
urllib.request.urlopen(urllib.request.Request(os.environ['OPENAI_BASE_URL'] + '/chat/completions',
    data=b'{\"model\":\"standin-1\",\"messages\":[]}', headers={'Content-Type': 'application/json'}))
print('unreachable')") > "$work/llm_miss.out" 2> "$work/llm_miss.err"
check "miss: an LLM request the tape does not hold exits 2" test $? = 2
check "miss: and says which request" grep -q "LLM with a request the tape does not hold" "$work/llm_miss.err"

# ---- one tape for a tree of processes working at once -----------------------------------------
fresh_workspace
(cd "$work/ws" && "$td" run --emit-tape "$work/tree.tape" -- bash -c '
  for i in 1 2 3 4 5 6; do ( read -r first < tasks.txt; wc -l tasks.txt > /dev/null ) & done; wait') \
  > /dev/null 2>&1
check "tree: six concurrent subshells' reads and subprocesses all on one tape" \
  test "$(count_kind "$work/tree.tape" file_read)" -ge 6 -a "$(count_kind "$work/tree.tape" process_spawn)" = 6
check "tree: seq is 0..N-1 across the processes" "$python" -c "
import json, sys
seqs = [json.loads(line)['seq'] for line in open('$work/tree.tape').read().splitlines()[1:]]
sys.exit(seqs != list(range(len(seqs))))"

# ---- --json: the summary a CI job reads ------------------------------------------------------
fresh_workspace
(cd "$work/ws" && "$td" replay "$work/c/run.tape" --json -- "$c_agent") > /dev/null 2> "$work/json.err"
check "--json: one JSON summary line with the program's exit code and no miss" "$python" -c "
import json, sys
summary = json.loads(open('$work/json.err').read().splitlines()[-1])
sys.exit(not (summary['command'] == 'replay' and summary['exit_code'] == 3 and summary['miss'] is None))"

# ---- the environment a program scrubs keeps the testbench ------------------------------------
fresh_workspace
(cd "$work/ws" && "$td" run --emit-tape "$work/scrubbed.tape" -- env -i "$python" -c \
  "import time; open('tasks.txt').read(); print(time.time() > 0)") > /dev/null 2>&1
check "env -i: the program exec'd with a scrubbed environment is still taped" \
  test "$(count_kind "$work/scrubbed.tape" file_read)" = 1

# ---- credentials the program was given never reach the tape ---------------------------------
fresh_workspace
(cd "$work/ws" && OPENAI_API_KEY=sk-tapedeck-leaky-0123 "$td" run --emit-tape "$work/leak.tape" -- \
  bash -c 'echo "$OPENAI_API_KEY" > key.txt; cat key.txt; true') > "$work/leak.out" 2> "$work/leak.err"
check "secrets: the program still saw its key" grep -q sk-tapedeck-leaky-0123 "$work/leak.out"
check "secrets: a subprocess's output that carried the key is redacted on the tape" \
  bash -c "! grep -rq sk-tapedeck-leaky-0123 '$work/leak.tape' '$work/leak.tape.cas' 2>/dev/null && grep -q 'redacted by tapedeck' '$work/leak.tape'"
check "secrets: a file that holds the key is kept by hash only, with a warning" \
  grep -q "held a credential" "$work/leak.err"

# ---- a subprocess is the process its parent started: same pid, same parent, its signals ------
# tapedeck-exec becomes the subprocess (a teller it forked off watches it), so what the parent
# knows of it holds natively, recorded and replayed alike.
cat > "$work/family.py" <<'PY'
import os, subprocess, sys, time
child = subprocess.run([sys.executable, "-c", "import os; print(os.getppid(), os.getpid())"],
                       capture_output=True, text=True)
print("the child's parent is me:", int(child.stdout.split()[0]) == os.getpid())
p = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE)
print("Popen.pid is the child's pid:", int(p.communicate()[0]) == p.pid)
shell = subprocess.run("echo $PPID", shell=True, capture_output=True, text=True)
print("a shell's $PPID is me:", int(shell.stdout) == os.getpid())
at_once = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
at_once.kill()
print("killed at once:", at_once.wait())
later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
time.sleep(0.3)
later.kill()
print("killed later:", later.wait())
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
time.sleep(0.3)
child.terminate()
print("terminated:", child.wait())
print("a closed pipe:", subprocess.run("yes | head -c 3", shell=True, capture_output=True).stdout)
first_write = """import sys, time
time.sleep(0.3)
try:
    sys.stdout.write("late"); sys.stdout.flush(); sys.stderr.write("the write went through")
except BrokenPipeError:
    sys.stderr.write("the write failed: its reader is gone")"""
gone = subprocess.Popen([sys.executable, "-c", first_write], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
gone.stdout.close()
print("its reader closed before its first write:", gone.stderr.read(), gone.wait())
started = time.monotonic()
try:
    subprocess.run("sleep 3", shell=True, timeout=0.1, capture_output=True)
except subprocess.TimeoutExpired:
    print("a timeout's kill is waited for at once:", time.monotonic() - started < 1.5)
left = subprocess.run("echo now; (sleep 0.5; echo later) &", shell=True, capture_output=True)
print("output of what it left running:", left.stdout)
# The same command twice, overlapping: the first started ends last (fed its stdin later).
echo = [sys.executable, "-c", "import sys; print(sys.stdin.read())"]
first = subprocess.Popen(echo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
second = subprocess.run(echo, input="second", capture_output=True, text=True)
print("overlapping:", first.communicate("first")[0].strip(), second.stdout.strip())
# coreutils' timeout signals its own process group, SIGCONT included.
print("timeout's own signals:", subprocess.run(["timeout", "0.2", "sleep", "5"]).returncode)
PY
cat > "$work/stopped.py" <<'PY'
import os, signal, subprocess, sys, time
s = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6); print('resumed')"],
                     stdout=subprocess.PIPE, text=True)
time.sleep(0.3)
os.kill(s.pid, signal.SIGSTOP)
print("stopped:", os.WIFSTOPPED(os.waitpid(s.pid, os.WUNTRACED)[1]))
os.kill(s.pid, signal.SIGCONT)
print(s.communicate()[0].strip(), s.returncode)
PY
fresh_workspace
(cd "$work/ws" && "$python" "$work/family.py" > "$work/family.native" && "$python" "$work/stopped.py" > "$work/stopped.native")
(cd "$work/ws" && timeout 30 "$td" run -q --emit-tape "$work/family.tape" -- "$python" "$work/family.py") \
  > "$work/family.rec" 2> "$work/family.err"
(cd "$work/ws" && timeout 30 "$td" replay -q "$work/family.tape" -- "$python" "$work/family.py") \
  > "$work/family.rep" 2>> "$work/family.err"
check "family: natively every relation holds" bash -c "! grep -q False '$work/family.native'"
check "family: recorded, the program prints what it printed natively" diff "$work/family.native" "$work/family.rec"
check "family: replayed, too" diff "$work/family.native" "$work/family.rep"
check "family: a SIGKILLed subprocess is taped with its signal" grep -q '"exit_code":137' "$work/family.tape"
(cd "$work/ws" && timeout 30 "$td" run -q -- "$python" "$work/stopped.py") > "$work/stopped.rec" 2>&1
check "family: a subprocess stopped and continued behaves as natively" diff "$work/stopped.native" "$work/stopped.rec"

# ---- a subprocess started as another user cannot reach the supervisor: it runs, untaped -------
# (Python's subprocess.run(user=...), sudo -u). Root only: that takes the right to change user.
if [ "$(id -u)" = 0 ] && id nobody > /dev/null 2>&1; then
  cat > "$work/as_nobody.py" <<'PY'
import subprocess
done = subprocess.run(["/usr/bin/id", "-u"], user="nobody", stdout=subprocess.PIPE, text=True)
print("as nobody:", done.stdout.strip(), "exit", done.returncode)
PY
  (cd "$work/ws" && "$python" "$work/as_nobody.py") > "$work/nobody.native"
  (cd "$work/ws" && timeout 30 "$td" run -q --emit-tape "$work/nobody.tape" -- "$python" "$work/as_nobody.py") \
    > "$work/nobody.rec" 2> "$work/nobody.err"
  check "another user: recorded, it runs as natively" diff "$work/nobody.native" "$work/nobody.rec"
  check "another user: and says it is not taped" grep -q "runs as another user.*not taped" "$work/nobody.err"
  (cd "$work/ws" && timeout 30 "$td" replay -q "$work/nobody.tape" -- "$python" "$work/as_nobody.py") \
    > "$work/nobody.rep" 2>> "$work/nobody.err"
  check "another user: replayed, likewise" diff "$work/nobody.native" "$work/nobody.rep"
fi

# ---- a file the program wrote and its subprocess then rewrote: the subprocess's bytes replay ----
cat > "$work/rewrite.py" <<'PY'
import subprocess, sys
upper = "text = open('rewritten.txt').read(); open('rewritten.txt', 'w').write(text.upper())"
for round in range(3):
    with open("rewritten.txt", "w") as out:
        out.write("written by the program, round %d\n" % round)
    subprocess.run([sys.executable, "-c", upper], check=True)
    print(open("rewritten.txt").read().strip())
PY
fresh_workspace
(cd "$work/ws" && "$td" run -q --emit-tape "$work/rewrite.tape" -- "$python" "$work/rewrite.py") \
  > "$work/rewrite.rec" 2> "$work/rewrite.err"
check "rewrite: recorded, the subprocess's rewrite is seen" grep -q "WRITTEN BY THE PROGRAM, ROUND 2" "$work/rewrite.rec"
check "rewrite: each rewrite is taped as the subprocess's" \
  test "$(grep -c '"by_subprocess":true' "$work/rewrite.tape")" = 3
fresh_workspace
(cd "$work/ws" && "$td" replay -q "$work/rewrite.tape" -- "$python" "$work/rewrite.py") \
  > "$work/rewrite.rep" 2>> "$work/rewrite.err"
check "rewrite: replayed, the program reads what its subprocess wrote" \
  diff "$work/rewrite.rec" "$work/rewrite.rep"

# ---- the program's signal dispositions are its caller's, not tapedeck's ----------------------
# (cpp-httplib ignores SIGPIPE in tapedeck; the program must not inherit that, but what the
# caller ignored, as nohup does SIGHUP, it keeps.)
"$td" run -q -- bash -c 'yes | head -c 1 > /dev/null; echo "${PIPESTATUS[0]}"' > "$work/pipe.out" 2>&1
check "signals: a writer to a closed pipe dies of SIGPIPE (141), as natively" \
  test "$(cat "$work/pipe.out")" = 141
nohup "$td" run -q -- bash -c 'grep SigIgn /proc/self/status' > "$work/nohup.out" 2> /dev/null
check "signals: what the caller ignored (nohup's SIGHUP) the program ignores" \
  grep -q "SigIgn:.*1$" "$work/nohup.out"

# ---- names: only local ones (and the hosts --allow names) are looked up ----------------------
# A lookup of any other goes out on the network in real time, in a thread of its own: it fails at
# once instead, in both modes, as the connect would be denied anyway.
lookup='import socket, sys
for name in sys.argv[1:]:
    try:
        print(name, "->", socket.getaddrinfo(name, 443)[0][4][0])
    except socket.gaierror as error:
        print(name, "-> not found")'
"$td" run -q -- "$python" -c "$lookup" localhost 127.0.0.1 api.openai.com \
  > "$work/names.out" 2> "$work/names.err"
check "a local name resolves" grep -qx "localhost -> 127.0.0.1" "$work/names.out"
check "an address resolves" grep -qx "127.0.0.1 -> 127.0.0.1" "$work/names.out"
check "another name is not found" grep -qx "api.openai.com -> not found" "$work/names.out"
check "  and the denial names it" grep -q "network denied: resolving api.openai.com" "$work/names.err"
"$td" run -q --allow api.openai.com:443 -- "$python" -c "$lookup" api.openai.com \
  > /dev/null 2> "$work/allowed-name.err"
check "a name --allow names is looked up (whether or not this machine can)" \
  bash -c "! grep -q 'network denied: resolving' '$work/allowed-name.err'"

# ---- refusals --------------------------------------------------------------------------------
"$td" run -- "$(dirname "$td")/tapedeck-exec" > /dev/null 2> "$work/static.err"
check "a static binary gets a warning naming what is not taped" \
  grep -q "is statically linked: there is no libc to interpose" "$work/static.err"
"$td" run -- bash -c 'exit 7' 2> /dev/null
check "run passes the program's exit code on (untaped)" test $? = 7
"$td" run --emit-tape "$work/c/run.tape" -- true 2> "$work/exists.err"
check "run refuses to replace a tape without --overwrite (exit 2)" test $? = 2
check "  and says so in one line" test "$(wc -l < "$work/exists.err")" = 1
"$td" run -- /no/such/program 2> "$work/missing.err"
check "a missing program is exit 2, one line" test $? = 2 -a "$(wc -l < "$work/missing.err")" = 1
"$td" replay "$work/nope.tape" -- true 2> /dev/null
check "replay of a tape that is not there is exit 2" test $? = 2

echo
if [ "$failures" -gt 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all run/replay checks passed"
