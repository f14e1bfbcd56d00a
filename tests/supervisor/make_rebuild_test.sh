#!/usr/bin/env bash
# make decides what to rebuild from file times: a project built under `tapedeck run`, then a
# source touched and built again under `run`. Each build replayed from the workspace it started
# from prints what make printed recorded (all four objects and the link; then b.o and the link
# alone), twice. The compilers are tools, played back; the objects they made are made again.
# Usage: make_rebuild_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
command -v make > /dev/null && command -v cc > /dev/null ||
  { echo "skipped: no make or cc (scripts/install-deps.sh installs build-essential)"; exit 77; }
mkdir -p "$work/ws" && cd "$work/ws"
for unit in a b c; do echo "int $unit(void) { return 1; }" > "$unit.c"; done
echo 'int main(void) { return 0; }' > main.c
printf 'prog: a.o b.o c.o main.o\n\tcc -o prog $^\n%%.o: %%.c\n\tcc -c $< -o $@\n' > Makefile
cp -a "$work/ws" "$work/before-first"
"$td" run -q --emit-tape "$work/first.tape" -- make > "$work/first.out"
check "first build recorded (exit 0)" test $? = 0
check "the first build compiled all four" test "$(grep -c '^cc -c' "$work/first.out")" = 4
sleep 1.1  # a later second than the objects', on any file system's time granularity
touch b.c
cp -a "$work/ws" "$work/before-second"
"$td" run -q --emit-tape "$work/second.tape" -- make > "$work/second.out"
check "second build recorded (exit 0)" test $? = 0
check "the second build compiled b.c alone" test "$(grep '^cc -c' "$work/second.out")" = "cc -c b.c -o b.o"
for build in first second; do
  for round in 1 2; do
    rm -rf "$work/replayed" && cp -a "$work/before-$build" "$work/replayed"
    (cd "$work/replayed" && "$td" replay -q "$work/$build.tape" -- make) > "$work/$build.$round.out" \
      2> "$work/$build.$round.err"
    check "$build build, replay $round: exit 0" test $? = 0
    check "$build build, replay $round: make printed what it printed recorded" \
      diff "$work/$build.out" "$work/$build.$round.out"
  done
done
finish "make rebuild"
