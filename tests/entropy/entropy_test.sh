#!/usr/bin/env bash
# Randomness is taped: a C program drawing it every way libc offers (and a forked child), and a
# Python program (uuid4, random, secrets, hash(), tempfile names, /dev/urandom), each recorded
# twice and replayed twice. Two recordings differ (the randomness is real); each replay prints
# its recording's bytes exactly, twice over; parent and child never draw the same bytes; the
# tape holds one entropy record, not the bytes drawn (a megabyte drawn grows it by nothing).
# Usage: entropy_test.sh TAPEDECK DRAWS SOURCE_DIR
set -uo pipefail
td=$(realpath "$1")
draws=$(realpath "$2")
here=$(realpath "$3")
source "$(dirname "$0")/../harness.sh"

# taped NAME PROGRAM...: two recordings, two replays of the first, each in a fresh workspace.
taped() {
  local name=$1; shift
  for take in 1 2; do
    rm -rf "$work/ws" && mkdir "$work/ws"
    (cd "$work/ws" && "$td" run -q --emit-tape "$work/$name-$take.tape" -- "$@") > "$work/$name-run$take.out"
    rm -rf "$work/ws" && mkdir "$work/ws"
    (cd "$work/ws" && "$td" replay -q "$work/$name-1.tape" -- "$@") > "$work/$name-replay$take.out"
  done
  check "$name: it printed its draws" test -s "$work/$name-run1.out"
  check "$name: two recordings draw different bytes" \
    bash -c "! cmp -s '$work/$name-run1.out' '$work/$name-run2.out'"
  check "$name: the replay prints the recording's bytes" diff "$work/$name-run1.out" "$work/$name-replay1.out"
  check "$name: and so does a second replay" diff "$work/$name-replay1.out" "$work/$name-replay2.out"
  check "$name: one entropy record on the tape" \
    test "$(grep -c '"kind":"entropy"' "$work/$name-1.tape")" = 1
}

taped c "$draws"
child=$(sed -n 's/^child //p' "$work/c-run1.out")
parent=$(sed -n 's/^parent //p' "$work/c-run1.out")
check "c: a forked child draws bytes of its own" test -n "$child" -a "$child" != "$parent"
check "c: every entry point gave different bytes" \
  test "$(cut -d' ' -f2- "$work/c-run1.out" | sort | uniq -d | wc -l)" = 0

taped python "$python" "$here/draws.py"

# Volume: a megabyte from /dev/urandom grows the tape by nothing.
rm -rf "$work/ws" && mkdir "$work/ws"
(cd "$work/ws" && "$td" run -q --emit-tape "$work/small.tape" -- "$python" -c 'import os; os.urandom(16)')
(cd "$work/ws" && "$td" run -q --emit-tape "$work/big.tape" -- "$python" -c '
with open("/dev/urandom", "rb") as f:
    for _ in range(256): f.read(4096)')
# (Clock reads differ with the work done; what randomness could add is everything else.)
beyond_clock() { grep -v '"kind":"clock_read"' "$1" | wc -c; }
check "a megabyte drawn adds nothing to the tape but its clock reads" \
  test $(( $(beyond_clock "$work/big.tape") - $(beyond_clock "$work/small.tape") )) -lt 256
check "  and nothing to its sidecar" \
  test "$(du -sb "$work/big.tape.cas" 2>/dev/null | cut -f1 || echo 0)" -lt 8192

finish entropy
