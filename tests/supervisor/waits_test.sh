#!/usr/bin/env bash
# Waits with a timeout are the program's sleeps: an event loop sleeps in poll/select/epoll, a
# thread that waits "at most so long" for another sleeps on a semaphore or a condition variable.
# Programs:
#   loop.py    asyncio.sleep, select.select, select.poll and a selector on a pipe nothing writes to;
#   agent.py   the stand-in LLM called from asyncio while a timer runs beside the call and a
#              wait_for times out;
#   timers.js  a Node timeout and an interval;
#   sync.py    threading.Event.wait, a Timer, queue.get(timeout=) and Condition.wait timing out,
#              then an Event another thread sets;
#   sync_waiter (C) sem_timedwait, sem_clockwait, pthread_cond_timedwait on either clock and
#              pthread_cond_clockwait timing out, then a semaphore another thread posts to.
# Each is recorded (against the live stand-in), then replayed twice with the stand-in stopped: the
# same stdout, the recording tapes each wait that timed out as a clock_sleep of its timeout
# marked "waited":true, a replay tapes the very same ones (each was matched to the recording's
# and skipped), and semantic fidelity passes. How much wall time a replay saves is
# bench/interposer.sh's to measure.
# Usage: waits_test.sh TAPEDECK EXAMPLES_DIR SYNC_WAITER
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
sync_waiter=$(realpath "$3")
source "$(dirname "$0")/../harness.sh"

# The waits a tape holds (clock_sleeps marked waited), their lengths in order.
sleeps() {
  grep -o '"kind":"clock_sleep","duration_ms":[0-9]*,"waited":true' "$1" | grep -o '[0-9]*' | tr '\n' ' '
}

cat > "$work/loop.py" <<'PY'
import asyncio, os, selectors, select, time
started = time.monotonic()
async def main():
    await asyncio.sleep(0.4)
asyncio.run(main())
select.select([], [], [], 0.3)
select.poll().poll(300)
quiet, _ = os.pipe()
with selectors.DefaultSelector() as selector:
    selector.register(quiet, selectors.EVENT_READ)
    print("selector found", len(selector.select(timeout=0.2)))
print("waited about", round(time.monotonic() - started, 1), "s")
PY

cat > "$work/agent.py" <<'PY'
import asyncio, json, os, urllib.request
def ask(text):
    request = urllib.request.Request(
        os.environ["OPENAI_BASE_URL"] + "/chat/completions",
        data=json.dumps({"model": "standin-1", "messages": [{"role": "user", "content": text}]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)["choices"][0]["message"]["content"]
async def main():
    loop = asyncio.get_running_loop()
    print("first:", await loop.run_in_executor(None, ask, "hello"))
    await asyncio.sleep(0.3)
    _, second = await asyncio.gather(asyncio.sleep(0.2), loop.run_in_executor(None, ask, "again"))
    print("second:", second)
    try:
        await asyncio.wait_for(asyncio.sleep(5), timeout=0.3)
    except asyncio.TimeoutError:
        print("gave up waiting, as recorded")
asyncio.run(main())
PY

cat > "$work/sync.py" <<'PY'
import queue, threading, time
started = time.monotonic()
print("event set:", threading.Event().wait(0.5))
timer = threading.Timer(0.3, lambda: print("timer fired"))
timer.start()
timer.join()
try:
    queue.Queue().get(timeout=0.4)
except queue.Empty:
    print("queue empty")
condition = threading.Condition()
with condition:
    print("notified:", condition.wait(0.2))
later = threading.Event()
threading.Thread(target=lambda: (time.sleep(0.1), later.set())).start()
print("set by a thread:", later.wait(5))
print("waited about", round(time.monotonic() - started, 1), "s")
PY

cat > "$work/timers.js" <<'JS'
let ticks = 0;
setTimeout(() => {
  const every = setInterval(() => {
    if (++ticks === 3) { clearInterval(every); console.log("three ticks after a timeout"); }
  }, 100);
}, 300);
JS

mkdir -p "$work/ws" && cd "$work/ws"
start_standin
programs=(loop agent timers sync sync_waiter)
for name in "${programs[@]}"; do
  case $name in
    timers) command -v node > /dev/null || { echo "FAIL: node is missing" >&2; exit 1; }; run=(node "$work/timers.js") ;;
    sync_waiter) run=("$sync_waiter") ;;
    *) run=("$python" "$work/$name.py") ;;
  esac
  "$td" run -q --emit-tape "$work/$name.tape" --llm-upstream "http://127.0.0.1:$port" -- "${run[@]}" \
    > "$work/$name.rec" 2> "$work/$name.err"
  check "$name: recorded (exit 0)" test $? = 0
done
stop_standin
# asyncio asks for what is left of its 0.4 s when its loop gets to wait, so a loaded machine may
# tape a little less (one wait, still); the other three ask for their timeout as given.
check "loop: each wait that timed out is on the recording as a sleep of its timeout" \
  bash -c "[[ '$(sleeps "$work/loop.tape")' =~ ^(3[5-9][0-9]|40[0-2])\ 30[0-2]\ 30[0-2]\ 20[0-2]\ \$ ]]"
check "loop: the selector found nothing" grep -q "selector found 0" "$work/loop.rec"
check "agent: the timer beside the call and the wait_for are on the recording" \
  test "$(sleeps "$work/agent.tape" | wc -w)" -ge 3
check "timers: the timeout and the interval's waits are on the recording" \
  test "$(sleeps "$work/timers.tape" | wc -w)" -ge 3
check "sync: the event, timer, queue and condition waits are on the recording, in order" \
  bash -c "[[ '$(sleeps "$work/sync.tape")' =~ ^50[0-2]\ 30[0-2]\ 40[0-2]\ 20[0-2]\ \$ ]]"
check "sync: the event another thread set ended its wait" grep -q "set by a thread: True" "$work/sync.rec"
check "sync_waiter: each wait that timed out is on the recording, in order" \
  bash -c "[[ '$(sleeps "$work/sync_waiter.tape")' =~ ^30[0-2]\ 20[0-2]\ 25[0-2]\ 15[0-2]\ 10[0-2]\ \$ ]]"
check "sync_waiter: the posted semaphore's wait ended" \
  grep -q "sem_timedwait a thread posts to: ended" "$work/sync_waiter.rec"
for name in "${programs[@]}"; do
  case $name in
    timers) run=(node "$work/timers.js") ;;
    sync_waiter) run=("$sync_waiter") ;;
    *) run=("$python" "$work/$name.py") ;;
  esac
  for i in 1 2; do
    "$td" replay -q "$work/$name.tape" --emit-tape "$work/$name.replay$i.tape" -- "${run[@]}" \
      > "$work/$name.rep$i" 2>> "$work/$name.err"
    check "$name replay $i: exit 0" test $? = 0
    check "$name replay $i: the same stdout" diff "$work/$name.rec" "$work/$name.rep$i"
    # (Both lists in the line: a rare failure here has not been caught with its tapes yet.)
    recorded_waits=$(sleeps "$work/$name.tape")
    replayed_waits=$(sleeps "$work/$name.replay$i.tape")
    check "$name replay $i: the recording's waits, each matched and skipped (recorded: $recorded_waits; replayed: $replayed_waits)" \
      test "$recorded_waits" = "$replayed_waits"
    "$td" fidelity "$work/$name.tape" "$work/$name.replay$i.tape" --mode semantic > "$work/$name.fid$i"
    check "$name replay $i: semantic fidelity passes" test $? = 0
  done
done
# A signal that lands while a sleep is being taped interrupts the sleep, as natively: a child
# under the preload (every subprocess of a recording is) sleeping 600 s, sent SIGINT once it has
# started, ends with KeyboardInterrupt at once rather than sleeping its 600 s out (bounded: a
# hang fails the check).
cat > "$work/interrupt.py" <<'PY'
import signal, subprocess, sys
old = signal.signal(signal.SIGINT, signal.default_int_handler)
# (The handler is set in the child too: a test run in the background inherits SIGINT ignored.)
child = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                          "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                          "sys.stdout.write('x\\n')\nsys.stdout.flush()\ntime.sleep(600)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
signal.signal(signal.SIGINT, old)
child.stdout.read(1)
child.send_signal(signal.SIGINT)
_, err = child.communicate()
print("interrupted" if b"KeyboardInterrupt" in err else "not interrupted", child.returncode)
PY
record_interrupted() {
  (cd "$work" && "$td" run -q --emit-tape "$work/interrupt.tape" -- "$python" interrupt.py > "$work/interrupt.out")
}
check "a sleep the signal lands on while it is taped is interrupted" bounded 60 record_interrupted
check "  with KeyboardInterrupt, as natively" grep -qx "interrupted -2" "$work/interrupt.out"

finish waits
