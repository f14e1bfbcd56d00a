#!/usr/bin/env bash
# A replay's time passes only while the whole tree is idle: a sleep or a wait the recording does
# not have at this point is skipped once no other thread or process of the tree runs, the
# soonest deadline first; until then it is slept for real, a slice at a time. Each program below
# fails without this rule.
# poll_child.py: forks a child that works for a few tenths of a second on the CPU, and polls for
# its exit with waitpid(WNOHANG) and a sleep that doubles from 10 ms to 1 s (as CPython's
# test.support.wait_process does). Replayed twice: its polling took well under 5 s on the
# program's clock (skipped while the child ran, each sleep moved the clock on while the loop
# spun, by minutes in all).
# nap.py: a thread waits up to 0.5 s for a lock nobody releases while the main thread naps 10 ms
# at a time until it is done (as CPython's lock tests do). Replayed twice: the wait lasted its
# 0.5 s on the program's clock (with the naps skipped at once while the wait ran for real, the
# clock ran on by a minute and more).
# watchdog.py: calls the stand-in LLM (retrying a 500), then hands a worker thread a few tenths
# of a second of work on the CPU, with a watchdog thread that waits up to a minute for it; when
# it had to retry, the main thread meanwhile cools down (waits 30 s for an event nobody sets).
# Replayed with llm#1=500 (every wait here begins off the recording, where no record says which
# waits timed out):
#   the work takes well under a minute on the program's clock, and the watchdog never fires:
#   neither its wait nor the cool-down was skipped while the worker ran;
#   once the worker is done, the cool-down is skipped before the watchdog's later deadline (the
#   replay ends in seconds, the clock moved by the cool-down's 30 s);
#   two such replays print the same.
# Usage: idle_time_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
source "$(dirname "$0")/../harness.sh"

cat > "$work/watchdog.py" <<'PY'
import json, os, threading, time, urllib.error, urllib.request
def ask(text):
    request = urllib.request.Request(
        os.environ["OPENAI_BASE_URL"] + "/chat/completions",
        data=json.dumps({"model": "standin-1", "messages": [{"role": "user", "content": text}]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)["choices"][0]["message"]["content"]
retried = False
for attempt in range(3):
    try:
        answer = ask("hello")
        break
    except urllib.error.HTTPError as error:
        print("retrying after", error.code)
        retried = True
        time.sleep(0.2)
print("answer:", answer)
done = threading.Event()
def watchdog():
    if not done.wait(60):
        print("watchdog: the work has taken a minute")
def work():
    started = time.monotonic()
    total = 0
    for i in range(3_000_000):  # reads no clock
        total += i % 7
    worked = time.monotonic() - started
    print("work done:", total, "in under 10 s" if worked < 10 else f"in {worked:.1f} s")
watch = threading.Thread(target=watchdog)
watch.start()
worker = threading.Thread(target=work)
worker.start()
if retried:
    started = time.monotonic()
    print("event set:", threading.Event().wait(30))
    waited = time.monotonic() - started
    print("the cool-down lasted", "its 30 s" if 30 <= waited < 45 else f"{waited:.1f} s")
worker.join()
done.set()
watch.join()
PY

cat > "$work/poll_child.py" <<'PY'
import os, time
started = time.monotonic()
child = os.fork()
if child == 0:
    total = 0
    for i in range(3_000_000):  # reads no clock
        total += i % 7
    os._exit(0)
delay = 0.01
while os.waitpid(child, os.WNOHANG)[0] == 0:
    time.sleep(delay)
    delay = min(delay * 2, 1.0)
polled = time.monotonic() - started
print("the child was done", "in under 5 s" if polled < 5 else f"after {polled:.1f} s")
PY

cat > "$work/nap.py" <<'PY'
import threading, time
lock = threading.Lock()
lock.acquire()
result = []
def waiter():
    started = time.monotonic()
    result.append(lock.acquire(timeout=0.5))
    result.append(time.monotonic() - started)
threading.Thread(target=waiter).start()
while len(result) < 2:
    time.sleep(0.01)
print("acquired:", result[0], "after", "its 0.5 s" if 0.5 <= result[1] < 1.0 else f"{result[1]:.2f} s")
PY

# replayed_alike NAME WHAT EXPECTED: records $work/NAME.py, which must print a line matching
# EXPECTED, then replays it twice, each to print the same (WHAT says what that shows).
replayed_alike() {
  "$td" run -q --emit-tape "$work/$1.tape" -- "$python" "$work/$1.py" > "$work/$1.rec"
  check "$1: recorded (exit 0), $2" bash -c "[ $? = 0 ] && grep -q '$3' '$work/$1.rec'"
  for i in 1 2; do
    "$td" replay -q "$work/$1.tape" -- "$python" "$work/$1.py" > "$work/$1.rep$i"
    check "$1 replay $i: exit 0, the same stdout ($2 on its clock)" \
      bash -c "[ $? = 0 ] && diff '$work/$1.rec' '$work/$1.rep$i'"
  done
}

mkdir -p "$work/ws" && cd "$work/ws"
replayed_alike nap "the wait lasted its 0.5 s" "^acquired: False after its 0.5 s"
replayed_alike poll_child "the child was done in under 5 s" "in under 5 s"

start_standin
"$td" run -q --emit-tape "$work/watchdog.tape" --llm-upstream "http://127.0.0.1:$port" -- \
  "$python" "$work/watchdog.py" > "$work/watchdog.out" 2> "$work/watchdog.err"
check "watchdog: recorded (exit 0)" test $? = 0
stop_standin
for i in 1 2; do
  timeout 25 "$td" replay -q "$work/watchdog.tape" --emit-tape "$work/faulted$i.tape" \
    --fault "llm#1=500" -- "$python" "$work/watchdog.py" \
    > "$work/faulted$i.out" 2> "$work/faulted$i.err"
  check "watchdog replay $i: exit 0, in seconds (the cool-down skipped)" test $? = 0
  check "watchdog replay $i: the program retried the injected 500" grep -q "^retrying after 500" "$work/faulted$i.out"
  check "watchdog replay $i: the work took under 10 s on the program's clock" \
    grep -q "^work done: .* in under 10 s" "$work/faulted$i.out"
  check "watchdog replay $i: the watchdog did not fire" test "$(grep -c '^watchdog' "$work/faulted$i.out")" = 0
  check "watchdog replay $i: the cool-down lasted its 30 s on the program's clock" \
    grep -q "^the cool-down lasted its 30 s" "$work/faulted$i.out"
done
check "watchdog: both replays printed the same" cmp -s "$work/faulted1.out" "$work/faulted2.out"
finish idle_time
