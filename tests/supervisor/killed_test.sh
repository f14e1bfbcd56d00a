#!/usr/bin/env bash
# The tree never outlives tapedeck: `kill -9` of tapedeck while it records or replays a
# program blocked on its stdin (a Python program with a thread, and a Node program) leaves no
# process of the tree running within 2 s, checked by pid (a zombie only the machine's pid 1 can
# reap counts as gone). The killed run's folder stays (its owner named in it) until the next run
# removes it.
# `unprivileged` runs it all again as nobody (when run as root): a user namespace's pid
# namespace where the kernel gives one, else none.
# Usage: killed_test.sh TAPEDECK [unprivileged]
set -uo pipefail
td=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
if [ "${2:-}" = unprivileged ]; then
  if [ "$(id -u)" != 0 ]; then exec bash "$0" "$td"; fi
  # The user must reach everything: the binaries (tapedeck finds its preload library and exec
  # shim beside itself) and this script, in a folder of its own.
  shared=$(mktemp -d)
  trap 'rm -rf "$shared"' EXIT
  cp "$td" "$(dirname "$td")/tapedeck-exec" "$(dirname "$td")/libtapedeck_preload.so" "$shared/"
  cp "$0" "$here/../harness.sh" "$shared/"
  chmod -R a+rX "$shared"
  chmod a+rwx "$shared"
  setpriv --reuid=nobody --regid=nogroup --clear-groups env TMPDIR="$shared" HOME="$shared" \
    bash "$shared/killed_test.sh" "$shared/tapedeck"
  exit $?
fi
# (The copy run as another user has the harness beside it.)
if [ -f "$here/harness.sh" ]; then source "$here/harness.sh"; else source "$here/../harness.sh"; fi
mkdir "$work/ws" "$work/tmp"
cd "$work/ws"
export TMPDIR=$work/tmp  # the runs' folders (outside the workspace), where this test sees them
cat > threaded.py <<'PY'
import sys, threading, time
threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(int, 1)], daemon=True).start()
print("got", sys.stdin.readline().strip(), flush=True)
sys.stdin.read()  # until its stdin closes
PY
cat > reader.js <<'JS'
let first = true;
process.stdin.on("data", (d) => { if (first) { console.log("got", String(d).trim()); first = false; } });
setInterval(() => {}, 1000);
process.stdin.on("end", () => process.exit(0));
JS

# running PID: whether the process is there and not a zombie.
running() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
# tree_of PID: the pids of the process and everything under it.
tree_of() {
  local pid=$1 child
  echo "$pid"
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree_of "$child"; done
}

for program in "$python threaded.py" "node reader.js"; do
  name=${program##* }
  # The tape to replay: one line in, then its stdin closes.
  echo hi | "$td" run -q --emit-tape "$name.tape" -- $program > /dev/null 2>&1
  check "$name: recorded" "$td" verify "$name.tape"
  for mode in run replay; do
    rm -rf "$mode-$name.tape" "$mode-$name.tape.cas"
    mkfifo "in.$mode.$name"
    if [ "$mode" = run ]; then
      "$td" run -q --emit-tape "$mode-$name.tape" -- $program < "in.$mode.$name" > "$mode.$name.out" 2>&1 &
    else
      "$td" replay "$name.tape" -- $program < "in.$mode.$name" > "$mode.$name.out" 2>&1 &
    fi
    pid=$!
    exec 7> "in.$mode.$name"
    echo hi >&7  # the first line; the stream stays open, the program blocked on it
    for _ in $(seq 100); do grep -q "^got hi" "$mode.$name.out" && break; sleep 0.1; done
    check "$name: $mode: the program runs under tapedeck" grep -q "^got hi" "$mode.$name.out"
    tree=$(tree_of "$pid")
    check "$name: $mode: tapedeck's tree holds the program" test "$(echo "$tree" | wc -l)" -ge 2
    kill -9 "$pid"
    left=
    for _ in $(seq 20); do
      left=
      for p in $tree; do running "$p" && left="$left $p"; done
      [ -z "$left" ] && break
      sleep 0.1
    done
    check "$name: $mode: within 2 s of tapedeck's kill -9 no process of its tree runs (left:$left)" \
      test -z "$left"
    exec 7>&-
    wait "$pid" 2>/dev/null
    check "$name: $mode: the killed run's folder names its owner" \
      grep -qs "^$pid " "$TMPDIR"/tapedeck-run-*/owner
    "$td" run -q --emit-tape "next.tape" -- true > /dev/null 2>&1
    rm -rf next.tape next.tape.cas
    check "$name: $mode: the next run removed it; nothing of either is left" \
      test -z "$(ls -A "$TMPDIR")"
  done
done
# A CI job's timeout: `timeout 3` sends SIGTERM, which a program that ignores it outlives. With
# --kill-after 1 its tree is killed a second later: timeout returns 124 within 3 + 1 + 2 s,
# nothing of the tree is left, the tape verifies and ends with the outcome (exit 143).
cat > stubborn.py <<'PY'
import signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("got", sys.stdin.readline().strip(), flush=True)
sys.stdin.read()
PY
echo hi | "$td" run -q --emit-tape stubborn.tape -- "$python" stubborn.py > /dev/null 2>&1
for mode in run replay; do
  rm -rf "t-$mode.tape" "t-$mode.tape.cas"
  mkfifo "in.t.$mode"
  started=$(date +%s%N)
  if [ "$mode" = run ]; then
    timeout 3 "$td" run -q --kill-after 1 --emit-tape "t-$mode.tape" -- "$python" stubborn.py \
      < "in.t.$mode" > "t.$mode.out" 2>&1 &
  else
    timeout 3 "$td" replay --kill-after 1 --emit-tape "t-$mode.tape" stubborn.tape \
      -- "$python" stubborn.py < "in.t.$mode" > "t.$mode.out" 2>&1 &
  fi
  timer=$!
  exec 7> "in.t.$mode"
  echo hi >&7
  for _ in $(seq 100); do grep -q "^got hi" "t.$mode.out" && break; sleep 0.1; done
  tree=$(for child in $(cat /proc/$timer/task/*/children 2>/dev/null); do tree_of "$child"; done)
  wait "$timer"
  code=$?
  took=$((($(date +%s%N) - started) / 1000000))
  exec 7>&-
  check "stubborn: $mode: timeout returns 124 ($code) within 6 s ($took ms)" \
    test "$code" = 124 -a "$took" -lt 6000
  left=
  for p in $tree; do running "$p" && left="$left $p"; done
  check "stubborn: $mode: nothing of the tree is left (left:$left)" test -z "$left"
  check "stubborn: $mode: the tape verifies" "$td" verify "t-$mode.tape"
  check "stubborn: $mode: it ends with the outcome, exit 143" \
    bash -c "'$td' show 't-$mode.tape' | tail -1 | grep -q 'outcome *program exit 143'"
  check "stubborn: $mode: the summary says the tree was killed" \
    grep -q "sent SIGTERM and had not ended 1.0 s later" "t.$mode.out"
done
finish killed
