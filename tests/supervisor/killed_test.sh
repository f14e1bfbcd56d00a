#!/usr/bin/env bash
# The tree never outlives tapedeck: `kill -9` of tapedeck while it records or replays a
# program blocked on its stdin (a Python program with a thread, and a Node program) leaves no
# process of the tree running within 2 s, checked by pid (a zombie only the machine's pid 1 can
# reap counts as gone).
# Usage: killed_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../harness.sh"
cd "$work"
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
    check "$name: $mode: tapedeck's tree holds the program" test "$(echo "$tree" | wc -l)" -ge 3
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
  done
done
finish killed
