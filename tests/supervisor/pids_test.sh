#!/usr/bin/env bash
# Process ids and addresses repeat: as root, `tapedeck run` and `replay` start the program as pid
# 2 of a pid namespace of their own, without address-space randomization. A bash script printing
# $$, $RANDOM (seeded from the time, the pid and a stack address), $EPOCHREALTIME, $SECONDS,
# `mktemp -u`, the LLM's base URL (the proxy listens where the recording's did), a subshell's
# $BASHPID before
# and after a subprocess that forks itself (a replay does not run it, but moves the namespace's
# last pid on by the pids it took, taped with its spawn), and a
# Python program printing os.getpid(), an object's address, random.random(), uuid4(), a
# tempfile.mkstemp() name and hash("abc"), and a
# Node program printing process.pid, crypto.randomUUID(), Math.random() and random bytes, each
# recorded and replayed twice: the same bytes every time.
# Usage: pids_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
source "$(dirname "$0")/../harness.sh"
if [ "$(id -u)" != 0 ]; then
  echo "skipped: a pid namespace needs root here (unprivileged runs keep the host's pids, and say so)"
  exit 77
fi
mkdir -p "$work/ws" && cd "$work/ws"
cat > "$work/pids.sh" <<'SH'
echo "pid $$ random $RANDOM subshell $(echo $BASHPID) named $(cat /proc/$$/comm)"
echo "epoch $EPOCHREALTIME seconds $SECONDS temporary $(mktemp -u)"
bash -c 'echo "a subprocess: $$, its parent $PPID"; (true); (true)'
echo "after it, a subshell gets $(echo $BASHPID)"
echo "the LLM is at $OPENAI_BASE_URL"
SH
cat > "$work/pids.py" <<'PY'
import os, random, tempfile, uuid
fd, name = tempfile.mkstemp()
os.close(fd)
os.unlink(name)
print("pid", os.getpid(), repr(object()), random.random(), uuid.uuid4(), name, hash("abc"))
PY

# same NAME PROGRAM...: recorded once, replayed twice, all three outputs identical.
same() {
  local name=$1; shift
  "$td" run -q --emit-tape "$work/$name.tape" -- "$@" > "$work/$name.rec" 2> "$work/$name.err"
  check "$name: recorded" test $? = 0
  for i in 1 2; do "$td" replay -q "$work/$name.tape" -- "$@" > "$work/$name.rep$i" 2>> "$work/$name.err"; done
  check "$name: both replays print what the recording printed" \
    bash -c "diff '$work/$name.rec' '$work/$name.rep1' && diff '$work/$name.rec' '$work/$name.rep2'"
  check "$name: the program is pid 2" grep -q "^pid 2 " "$work/$name.rec"
  check "$name: no warning about process ids" bash -c "! grep -q 'no pid namespace' '$work/$name.err'"
}
same bash bash "$work/pids.sh"
check "bash: /proc/\$\$ is the program's own (the namespace's /proc)" grep -q "named bash" "$work/bash.rec"
same python "$python" "$work/pids.py"
# Recorded with an upstream, as an agent is, and replayed without one: the program's environment
# has the same shape (the upstream is a file of the run, not a variable), so what it derives from
# a stack address is the same: coreutils' mktemp mixes a local's address into its name. Its
# subprocesses call the LLM through tapedeck's proxy too (one that does is part of the agent).
cat > "$work/upstream.sh" <<'SH'
echo "a subprocess calls the LLM at $(sh -c 'echo $OPENAI_BASE_URL')"
exec mktemp -p .
SH
rm -f tmp.*
"$td" run -q --emit-tape "$work/upstream.tape" --llm-upstream http://127.0.0.1:9 -- \
  bash "$work/upstream.sh" > "$work/upstream.rec" 2> "$work/upstream.err"
check "upstream: recorded, its subprocess given tapedeck's proxy, not the upstream" \
  bash -c "grep -q 'a subprocess calls the LLM at http://127.0.0.1:[0-9]*/v1' '$work/upstream.rec' &&
           ! grep -q ':9/v1' '$work/upstream.rec'"
rm -f tmp.*  # (so that the replay's mktemp does not meet the recording's file)
"$td" replay -q "$work/upstream.tape" -- bash "$work/upstream.sh" > "$work/upstream.rep" 2>> "$work/upstream.err"
check "upstream: the replay's mktemp makes the recording's name" diff "$work/upstream.rec" "$work/upstream.rep"
# Node: OpenSSL seeds from getrandom and mixes in its thread's address; V8's Math.random() and
# crypto.randomUUID() come from there. The environment and the address space must match too.
cat > "$work/random.js" <<'JS'
const crypto = require("crypto");
console.log("pid", process.pid, crypto.randomUUID(), Math.random(), crypto.randomBytes(8).toString("hex"));
JS
if command -v node > /dev/null; then
  same node node "$work/random.js"
else
  echo "skipped: node (not installed)"
fi
"$td" run -q --emit-tape "$work/again.tape" -- bash "$work/pids.sh" > "$work/again.out" 2>&1
check "a second recording gets the same pid" \
  test "$(head -1 "$work/again.out" | cut -d' ' -f1-2)" = "$(head -1 "$work/bash.rec" | cut -d' ' -f1-2)"
finish pids
