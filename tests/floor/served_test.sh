#!/usr/bin/env bash
# Programs the preload library cannot reach, served by the system-call floor end to end: the same
# agent (clock, a one-second sleep, a workspace read, an LLM call over a raw socket, a file
# written) built statically against musl and against glibc, and in Go with and without cgo. Each
# is recorded against the stand-in LLM and replayed with it stopped and the network closed.
# Static: the replay prints exactly what the recording printed (clock values and the subprocess's
# output included), the workspace is byte-identical to before the replay, semantic fidelity
# passes, both tapes hold the sleep, the read, the subprocess and the write. Go: the same,
# durations measured on the monotonic clock alone (time.Since, time.Until) included, while the
# runtime's own clock reads stay off the tape (see src/floor/go_clock.hpp). The static agent
# exec'd in place by a preloaded shell script is served the same way (the floor follows it).
# Usage: served_test.sh TAPEDECK STATIC_GLIBC_AGENT SOURCE_DIR EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
glibc_agent=$(realpath "$2")
here=$(realpath "$3")
examples=$(realpath "$4")
source "$(dirname "$0")/../harness.sh"

for tool in musl-gcc go; do
  command -v "$tool" > /dev/null ||
    { echo "FAIL: $tool is missing (scripts/install-deps.sh installs musl-tools and golang-go)" >&2; exit 1; }
done
musl-gcc -static -O2 -o "$work/agent-musl" "$here/served_agent.c" &&
  musl-gcc -static -O2 -o "$work/quiet-waits" "$here/quiet_waits.c" ||
  { echo "FAIL: cannot build the musl agent" >&2; exit 1; }
export GOCACHE=$work/gocache GOPATH=$work/gopath GO111MODULE=off
(cd "$here" && go build -o "$work/agent-go-cgo" served_agent.go &&
  CGO_ENABLED=0 go build -o "$work/agent-go-static" served_agent.go &&
  go build -ldflags=-s -o "$work/agent-go-stripped" served_agent.go &&
  go build -o "$work/map-order" map_order.go && go build -o "$work/stream-agent" stream_agent.go) ||
  { echo "FAIL: cannot build the Go agent" >&2; exit 1; }

fresh_workspace() { rm -rf "$work/ws" && cp -r "$examples/agents/workspace" "$work/ws"; }
# in_workspace OUT ERR COMMAND...: COMMAND run in the workspace, its stdout and stderr in OUT, ERR
in_workspace() { cd "$work/ws" && "${@:3}" > "$1" 2> "$2"; }

# record_and_replay NAME PROGRAM: the recording in $work/NAME.tape, outputs in $work/NAME.*
record_and_replay() {
  local name=$1 program=$2
  start_standin
  fresh_workspace
  bounded 120 in_workspace "$work/$name.rec" "$work/$name.rec.err" \
    env OPENAI_API_KEY=sk-tapedeck-test-secret "$td" run --emit-tape "$work/$name.tape" \
    --llm-upstream "http://127.0.0.1:$port" -- "$program"
  check "$name: recorded (exit 0)" test $? = 0
  check "$name: the recording wrote output.txt" grep -q "Plan for" "$work/ws/output.txt"
  stop_standin
  fresh_workspace
  cp -r "$work/ws" "$work/before"
  bounded 120 in_workspace "$work/$name.rep" "$work/$name.rep.err" \
    env OPENAI_API_KEY=sk-tapedeck-test-secret "$td" replay "$work/$name.tape" \
    --emit-tape "$work/$name.replay.tape" -- "$program"
  check "$name: replayed offline (exit 0)" test $? = 0
  check "$name: the workspace is byte-identical to before the replay" diff -r "$work/before" "$work/ws"
  rm -rf "$work/before"
  for tape in "$work/$name.tape" "$work/$name.replay.tape"; do
    check "$name: $(basename "$tape") holds the read of tasks.txt" has "$tape" 'file_read .*"tasks.txt"'
    check "$name: $(basename "$tape") holds the write of output.txt" has "$tape" 'file_write .*"output.txt"'
    check "$name: $(basename "$tape") holds clock reads" has "$tape" 'clock_read'
    check "$name: $(basename "$tape") holds the LLM call" has "$tape" 'llm_call'
    check "$name: $(basename "$tape") holds the date subprocess" has "$tape" 'process_spawn .*date'
  done
  check "$name: the LLM's answer is the recorded one" \
    test "$(grep '^llm:' "$work/$name.rec")" = "$(grep '^llm:' "$work/$name.rep")"
}

# replayed_as_recorded NAME: a static agent's replay printed what its recording printed (clock
# values and randomness included), both tapes hold its one-second sleep, semantic fidelity passes.
replayed_as_recorded() {
  local name=$1
  check "$name: the replay printed what the recording printed, clock values included" \
    diff "$work/$name.rec" "$work/$name.rep"
  check "$name: the one-second sleep is on both tapes" \
    bash -c "'$td' show '$work/$name.tape' | grep 'clock_sleep    1000 ms' > /dev/null &&
             '$td' show '$work/$name.replay.tape' | grep 'clock_sleep    1000 ms' > /dev/null"
  check "$name: semantic fidelity passes" \
    "$td" fidelity "$work/$name.tape" "$work/$name.replay.tape" --mode semantic
}

for name in musl glibc; do
  program=$work/agent-musl
  [ "$name" = glibc ] && program=$glibc_agent
  record_and_replay "static-$name" "$program"
  replayed_as_recorded "static-$name"
  for tape in "$work/static-$name.tape" "$work/static-$name.replay.tape"; do
    check "static-$name: $(basename "$tape") holds the delete of scratch.tmp" \
      has "$tape" 'file_delete .*"scratch.tmp"'
    check "static-$name: $(basename "$tape") holds the rename of output.tmp" \
      has "$tape" 'file_delete .*"output.tmp"'
  done
  check "static-$name: the warning says what is served and what is not" \
    grep -q "statically linked.*floor serves its clock reads.*not taped: folders" "$work/static-$name.rec.err"
  # Faults reach a program the floor serves: its open fails, its subprocess exits otherwise.
  fresh_workspace
  (cd "$work/ws" && "$td" replay -q "$work/static-$name.tape" --emit-tape "$work/fault.tape" \
     --overwrite --fault 'file:tasks.txt=eacces' --fault 'process:date#1=exit:7' -- "$program") \
    > "$work/static-$name.fault" 2>&1
  check "static-$name: --fault file:tasks.txt=eacces fails its open (read -1)" \
    grep -q "^tasks.txt: -1 bytes" "$work/static-$name.fault"
  check "static-$name: --fault process:date#1=exit:7 is the exit its parent sees" \
    grep -q "^date exit 7: " "$work/static-$name.fault"
  check "static-$name: both faults are on the replay's tape" \
    bash -c "grep -q '\"kind\":\"file_fault\"' '$work/fault.tape' &&
             grep -q '\"kind\":\"process_fault\"' '$work/fault.tape'"
done

# The same static agent exec'd in place by a shell script (`exec ./agent`, as launchers and
# `sh -c 'exec …'` start agents): the root is the preloaded shell, whose floor has the network's
# reach, and the floor follows the exec, so the agent is served as the static root above is.
# Built at a fixed address (musl), and as a static-pie (glibc; no interpreter: the kernel loads it
# where mappings go, as Rust's musl programs are loaded).
gcc -static-pie -O2 -o "$work/agent-static-pie" "$here/served_agent.c" ||
  { echo "FAIL: cannot build the static-pie agent" >&2; exit 1; }
for name in musl static-pie; do
  program=$work/agent-musl
  [ "$name" = static-pie ] && program=$work/agent-static-pie
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$program" > "$work/launch-$name.sh"
  chmod +x "$work/launch-$name.sh"
  record_and_replay "in-place-$name" "$work/launch-$name.sh"
  replayed_as_recorded "in-place-$name"
  check "in-place-$name: the warning says the floor followed the exec" \
    grep -q "statically linked.*floor serves its clock reads.*the floor followed it" \
    "$work/in-place-$name.rec.err"
done

# A program that escapes anyway (a test-only hole in the filter: its opens are let through) is
# named with what escapes, and its replay writes into the private view, never the workspace.
musl-gcc -static -O2 -o "$work/escape" "$here/escape.c" ||
  { echo "FAIL: cannot build the escaping program" >&2; exit 1; }
fresh_workspace
(cd "$work/ws" && "$td" run -q --emit-tape "$work/escape.tape" -- "$work/escape") > /dev/null 2>&1
fresh_workspace
cp -r "$work/ws" "$work/before"
(cd "$work/ws" && TAPEDECK_TEST_FLOOR_HOLE=open,openat "$td" replay --json "$work/escape.tape" -- \
   "$work/escape") > "$work/escape.out" 2> "$work/escape.err"
check "escape: the replay runs (exit 0), its write made in the private view" \
  bash -c "[ $? = 0 ] && grep -q 'wrote escaped.txt' '$work/escape.out'"
check "escape: named in a warning, with what escapes" \
  grep -q 'escape escapes the system-call floor through open, openat (TAPEDECK_TEST_FLOOR_HOLE): its file reads and writes are not taped' \
  "$work/escape.err"
check "escape: the warning is in --json's warnings" \
  grep -q '"warnings":\[.*escapes the system-call floor' "$work/escape.err"
check "escape: the workspace is byte-identical to before the replay (no escaped.txt)" \
  diff -r "$work/before" "$work/ws"
rm -rf "$work/before"
(cd "$work/ws" && TAPEDECK_TEST_FLOOR_HOLE=connect "$td" replay "$work/escape.tape" -- \
   "$work/escape") > /dev/null 2> "$work/hole.err"
check "a hole that is not a served call (the network's are never) is refused: exit 2, one line" \
  bash -c "[ $? = 2 ] && [ \$(wc -l < '$work/hole.err') = 1 ] && grep -q 'connect is not a call' '$work/hole.err'"

for name in cgo static; do
  record_and_replay "go-$name" "$work/agent-go-$name"
  check "go-$name: the replay printed what the recording printed (time.Now, time.Since and date included)" \
    diff "$work/go-$name.rec" "$work/go-$name.rep"
  check "go-$name: the recording's time.Since spans its one-second sleep" \
    grep -Eq '^slept 1[0-9]{3} ms$' "$work/go-$name.rec"
  # (the program's reads, time.Now in net/http's included, are 22 here; the runtime's, ~190)
  check "go-$name: the runtime's own clock reads and sleeps are not on the tape" \
    test "$("$td" stats "$work/go-$name.tape" --json | "$python" -c \
      "import json,sys; k=json.load(sys.stdin)['by_kind']; print(k.get('clock_read',0) < 40 and k.get('clock_sleep',0) == 0)")" = True
  check "go-$name: named a Go program, with what escapes" \
    grep -q "is a Go program.*floor serves.*time.Since and time.Until are taped" "$work/go-$name.rec.err"
done

# Sleeps by other names (poll, ppoll, select, pselect on no descriptor; 4 s in all): taped as
# sleeps, and a replay skips them (it ends long before a replay that waited could).
fresh_workspace
bounded 120 in_workspace "$work/quiet.rec" /dev/null "$td" run -q --emit-tape "$work/quiet.tape" -- "$work/quiet-waits"
check "quiet waits: recorded, each wait on the tape as a one-second sleep" \
  bash -c "[ \$('$td' show '$work/quiet.tape' | grep -c 'clock_sleep    1000 ms') = 4 ]"
(cd "$work/ws" && timeout 3 "$td" replay -q "$work/quiet.tape" -- "$work/quiet-waits" > "$work/quiet.rep" 2> /dev/null)
check "quiet waits: the replay skips them (done within 3 s) and prints what the recording printed" \
  bash -c "[ $? = 0 ] && diff '$work/quiet.rec' '$work/quiet.rep'"

# Programs exec'd in place of the shell the run started (`sh -c 'exec …'`), never in silence: a
# static one is followed by the floor, and named so; a Go one is not followed yet, and named with
# what goes untaped. A glibc program exec'd so is served by the preload: no warning.
fresh_workspace
printf '#include <time.h>\nint main(void) { return time(0) > 0 ? 0 : 1; }\n' > "$work/clock_once.c"
musl-gcc -static -O2 -o "$work/clock-once" "$work/clock_once.c"
bounded 60 in_workspace /dev/null "$work/inplace.err" "$td" run --emit-tape "$work/inplace.tape" -- sh -c "exec '$work/clock-once'"
check "in place: the exec'd static program ran (exit 0)" test $? = 0
check "in place: a static program exec'd by sh is named as followed by the floor" \
  grep -q "clock-once is statically linked.*the floor followed it" "$work/inplace.err"
check "in place: its clock read is on the tape" has "$work/inplace.tape" 'clock_read'
bounded 60 in_workspace /dev/null "$work/inplace-go.err" "$td" run --emit-tape "$work/inplace-go.tape" -- sh -c "exec '$work/map-order'"
check "in place: a Go program exec'd by sh is named, with what goes untaped and why" \
  grep -q "map-order is a Go program.*not taped.*exec'd in place.*does not follow a Go program yet" "$work/inplace-go.err"
bounded 60 in_workspace /dev/null "$work/inplace-glibc.err" "$td" run --emit-tape "$work/inplace-glibc.tape" -- sh -c "exec '$(command -v true)'"
check "in place: a glibc program exec'd by sh is served, and no warning says otherwise" \
  bash -c "! grep -q \"exec'd in place\" '$work/inplace-glibc.err'"

# Map iteration starts at a random place, which Go's runtime draws from its thread's state,
# seeded from AT_RANDOM's bytes, the thread's number and the CPU's timestamp counter: with the
# counter patched to read 0, the main goroutine's first range over a map is the same in every
# replay of a tape (natively, no two runs agree). Once other goroutines have run, which thread
# draws next is the scheduler's, and so is the order.
fresh_workspace
bounded 120 in_workspace "$work/map.rec" /dev/null "$td" run -q --emit-tape "$work/map.tape" -- "$work/map-order"
for n in 1 2 3; do
  bounded 120 in_workspace "$work/map.out$n" /dev/null "$td" replay -q "$work/map.tape" -- "$work/map-order"
  head -1 "$work/map.out$n" > "$work/map.rep$n"
done
check "map order: three replays of one tape range over a map in the same order" \
  bash -c "grep -q '^main: k' '$work/map.rep1' && cmp -s '$work/map.rep1' '$work/map.rep2' && cmp -s '$work/map.rep1' '$work/map.rep3'"

# A streamed answer under the floor: every event's time.Since replays as recorded (the events
# come 20 ms apart from the stand-in), the last one ([DONE]) included. There the program's read
# races net/http's own goroutine, which reads the clock at the stream's end, and a recording on a
# loaded machine has either order: the program's reads are taped in their own lane (time.Since,
# apart from net/http's time.now), so each is served its own value whichever reads first.
start_standin
fresh_workspace
bounded 120 in_workspace "$work/stream.rec" /dev/null env OPENAI_API_KEY=sk-tapedeck-test-secret \
  "$td" run -q --emit-tape "$work/stream.tape" --llm-upstream "http://127.0.0.1:$port" -- "$work/stream-agent"
stop_standin
check "stream: recorded, every event timed" \
  bash -c "[ \$(grep -c '^event [0-9]* after [0-9]* ms' '$work/stream.rec') -ge 3 ]"
same_streams=0
for n in 1 2 3; do
  bounded 120 in_workspace "$work/stream.rep$n" /dev/null env OPENAI_API_KEY=sk-tapedeck-test-secret \
    "$td" replay -q "$work/stream.tape" -- "$work/stream-agent" &&
    diff "$work/stream.rec" "$work/stream.rep$n" > /dev/null && same_streams=$((same_streams + 1))
done
check "stream: three replays print every event's time as recorded, to the last ($same_streams of 3)" \
  test "$same_streams" = 3
check "stream: the program's reads are taped in the lane of time.Since, net/http's in time.now's" \
  bash -c "'$td' show '$work/stream.tape' | grep -q 'monotonic = .*(\"time.Since\")' &&
           '$td' show '$work/stream.tape' | grep -q 'monotonic = .*(\"time.now\")'"

# Stripped of its symbol table, a Go program gives no way to tell time.Since's reads from the
# runtime's: they follow the replay's own clock, and the warning says so; all else replays.
record_and_replay go-stripped "$work/agent-go-stripped"
check "go-stripped: the replay printed what the recording printed, but for monotonic durations" \
  diff <(grep -v -e ' ms$' -e '^until' "$work/go-stripped.rec") \
    <(grep -v -e ' ms$' -e '^until' "$work/go-stripped.rep")
check "go-stripped: the warning says time.Since is not taped, and why" \
  grep -q "gives no way to tell time.Since's from them (stripped" "$work/go-stripped.rec.err"

# A static program nobody here wrote: busybox's shell, whose applets (cat, sleep, wc) run as
# subprocesses of the same image re-exec'd through /proc/self/exe.
if command -v busybox > /dev/null && ! ldd "$(command -v busybox)" > /dev/null 2>&1; then
  cat > "$work/busybox.sh" <<'SH'
date +%s
cat tasks.txt
sleep 1
echo "random: $RANDOM"
echo made > out.txt
wc -c out.txt
SH
  fresh_workspace
  (cd "$work/ws" && "$td" run -q --emit-tape "$work/busybox.tape" -- busybox sh "$work/busybox.sh") \
    > "$work/busybox.rec" 2>&1
  fresh_workspace
  (cd "$work/ws" && "$td" replay -q "$work/busybox.tape" -- busybox sh "$work/busybox.sh") \
    > "$work/busybox.rep" 2>&1
  check "busybox sh: the replay prints what the recording printed (\$RANDOM included)" \
    diff "$work/busybox.rec" "$work/busybox.rep"
  check "busybox sh: its applets are subprocesses named as run (cat, sleep, wc)" \
    bash -c "'$td' show '$work/busybox.tape' | grep -c 'process_spawn  \"\\(cat\\|sleep\\|wc\\)\"' | grep -qx 3"
  check "busybox sh: no applet's own reads are the shell's" \
    bash -c "! '$td' show '$work/busybox.tape' | grep -q 'file_read .*tasks.txt'"
else
  echo "FAIL: a static busybox is missing (scripts/install-deps.sh installs busybox-static)" >&2
  failures=$((failures + 1))
fi

finish served
