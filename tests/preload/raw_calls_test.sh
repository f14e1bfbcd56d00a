#!/usr/bin/env bash
# A program that makes its own system calls (raw_calls.c: the syscall instruction in its own code,
# as Bun and Zig programs do) is taped as one that goes through libc: the tape holds its file
# write, read, rename and sleep; a replay serves the recorded file bytes, randomness and clock and
# prints what the recording printed, after the workspace changed; its own SIGSYS handler still
# runs. A file named through its folder's descriptor (/proc/self/fd/N/name, as Bun names them) is
# taped as the workspace file it is. Three builds: position-independent, fixed at an address as
# Bun's binary is, and one making the same calls through libc's syscall(3) (as libuv closes files:
# Node's written files were never taped).
# Usage: raw_calls_test.sh TAPEDECK RAW_CALLS_PIE RAW_CALLS_FIXED RAW_CALLS_LIBC
set -uo pipefail
td=$(realpath "$1")
source "$(dirname "$0")/../harness.sh"

for program in "$(realpath "$2")" "$(realpath "$3")" "$(realpath "$4")"; do
  name=$(basename "$program")
  rm -rf "$work/ws" && mkdir "$work/ws" && cd "$work/ws" && echo "input one" > in.txt
  "$td" run -q --emit-tape "$work/$name.tape" -- "$program" > "$work/$name.rec" 2> "$work/$name.rec.err"
  check "$name: recorded (exit 0)" test $? = 0
  check "$name: the recording read the file" grep -q "read 10 bytes: input one" "$work/$name.rec"
  check "$name: its own SIGSYS handler ran and is the one sigaction reports" \
    grep -q "own SIGSYS handler ran: yes; sigaction reports it: yes" "$work/$name.rec"
  check "$name: the tape holds the raw write" has "$work/$name.tape" 'file_write .*"out.txt"'
  check "$name: the tape holds the raw read" has "$work/$name.tape" 'file_read .*"in.txt"'
  check "$name: the tape holds the raw rename" has "$work/$name.tape" 'file_write .*"moved.txt"'
  check "$name: the tape holds the write through the folder's descriptor" \
    has "$work/$name.tape" 'file_write .*"via-fd.txt"'
  check "$name: the tape holds the raw sleep" has "$work/$name.tape" 'clock_sleep .*300 ms'
  echo "input two, longer" > in.txt && rm -f moved.txt via-fd.txt
  cp -a "$work/ws" "$work/before"
  "$td" replay -q "$work/$name.tape" --emit-tape "$work/$name.replay.tape" -- "$program" \
    > "$work/$name.rep" 2> "$work/$name.rep.err"
  check "$name: replayed (exit 0)" test $? = 0
  check "$name: the replay printed what the recording printed (file, randomness, clock)" \
    cmp "$work/$name.rec" "$work/$name.rep"
  check "$name: the replay left the workspace as it was" diff -r "$work/before" "$work/ws"
  check "$name: semantic fidelity passes" \
    "$td" fidelity "$work/$name.tape" "$work/$name.replay.tape" --mode semantic
  rm -rf "$work/before"
done
finish "raw calls"
