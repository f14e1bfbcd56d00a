#!/usr/bin/env bash
# A program's signal handlers behind the preload's own (signal_handlers.c): natively and under
# record and replay they run with the kernel's arguments and are the ones sigaction and signal()
# report. Recorded, a sleep a handled signal came just before (between the clock read and the
# sleep, the moment a recording's taping lengthens) is interrupted at once, and the replay
# interrupts it as the recording did; a sleep with no signal before it is slept.
# Usage: signal_handlers_test.sh TAPEDECK SIGNAL_HANDLERS
set -uo pipefail
td=$(realpath "$1")
program=$(realpath "$2")
source "$(dirname "$0")/../harness.sh"

handlers_ok() { ! grep -q ": no$" "$1" && test "$(grep -c ": yes$" "$1")" = 5; }

"$program" > "$work/native.out"
check "natively: every handler check holds" handlers_ok "$work/native.out"

mkdir "$work/ws" && cd "$work/ws" || exit 1
bounded 60 "$td" run -q --emit-tape "$work/signals.tape" -- "$program" --sleep > "$work/rec.out"
check "recorded: exit 0" test $? = 0
check "recorded: every handler check holds behind the preload's handler" handlers_ok "$work/rec.out"
check "recorded: the sleep just after a handled signal is interrupted at once, all of it left" \
  grep -qx "a sleep just after a handled signal: interrupted, 3 s left" "$work/rec.out"
check "recorded: the sleep with no signal before it is slept" \
  grep -qx "a sleep with no signal: slept" "$work/rec.out"
check "the tape holds the sleep slept, not the one interrupted at once" \
  bash -c "[[ \$('$td' show '$work/signals.tape' --kind clock_sleep | grep -o '[0-9]* ms' | tr '\n' ' ') == '20 ms ' ]]"

bounded 60 "$td" replay -q "$work/signals.tape" --emit-tape "$work/replay.tape" -- "$program" --sleep \
  > "$work/rep.out"
check "replayed: exit 0" test $? = 0
check "replayed: the same output (the interrupted sleep too)" diff "$work/rec.out" "$work/rep.out"
check "replayed: semantic fidelity passes" \
  "$td" fidelity "$work/signals.tape" "$work/replay.tape" --mode semantic
finish "signal handlers"
