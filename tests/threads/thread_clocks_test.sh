#!/usr/bin/env bash
# Each thread is served its own clock reads and randomness: thread_clocks (the main thread and
# three it starts, and a forked child with two, all reading and drawing side by side) is recorded
# once with --thread-lanes and replayed three times; every replay prints every thread's reads and draws as recorded,
# whatever order the threads read in this time. The tape names each worker thread's lane (the
# root's "t1" … "t3", the child's with its place) and says its threads draw from streams of
# their own; a tape recorded without either still replays (threads share, as before). Recorded
# again with the workers writing files, every replay still hands each thread its own reads.
# The same program built statically, served by the floor (no preload): its threads are keyed by
# their place in their process's creation order, and every replay hands each its own reads,
# draws and file records as well.
# Usage: thread_clocks_test.sh TAPEDECK THREAD_CLOCKS THREAD_CLOCKS_STATIC
set -uo pipefail
td=$(realpath "$1")
program=$(realpath "$2")
static_program=$(realpath "$3")
source "$(dirname "$0")/../harness.sh"

mkdir -p "$work/ws" && cd "$work/ws"
"$td" run -q --thread-lanes --emit-tape "$work/threads.tape" -- "$program" > "$work/threads.rec" 2> "$work/threads.err"
check "recorded (exit 0)" test $? = 0
check "the recording printed seven threads" test "$(grep -c ' thread [0-9]:' "$work/threads.rec")" = 7
check "seven threads drew seven different numbers" \
  test "$(grep -o 'drew [0-9a-f]*' "$work/threads.rec" | sort -u | wc -l)" = 7
check "the entropy record says threads draw their own" grep -q '"kind":"entropy".*"threads":true' "$work/threads.tape"
lanes() { grep -o '"lane":"[^"]*"' "$work/threads.tape" | sort -u | tr '\n' ' '; }
check "the root's threads read in lanes t1, t2, t3 ($(lanes))" \
  bash -c "grep -q '\"lane\":\"t1\"' '$work/threads.tape' && grep -q '\"lane\":\"t3\"' '$work/threads.tape'"
check "the forked child's threads read in lanes of their own place" \
  test "$(grep -oE '"lane":"t[12]@[0-9a-f]{8}"' "$work/threads.tape" | sort -u | wc -l)" = 2
check "the main threads' reads carry no lane" \
  bash -c "grep '\"kind\":\"clock_read\"' '$work/threads.tape' | grep -qv '\"lane\"'"

# replay_thrice NAME ARGS...: replays $work/NAME.tape three times with ARGS; `same` counts those
# that exit 0 and print $work/NAME.rec byte for byte.
replay_thrice() {
  local name=$1
  shift
  same=0
  for round in 1 2 3; do
    "$td" replay -q "$work/$name.tape" -- "$program" "$@" > "$work/$name.replay$round" 2>> "$work/replay.err"
    if [ $? = 0 ] && cmp -s "$work/$name.rec" "$work/$name.replay$round"; then
      same=$((same + 1))
    else
      diff "$work/$name.rec" "$work/$name.replay$round" | cut -c1-160 | sed "s/^/  $name replay $round: /" >&2
    fi
  done
}
replay_thrice threads
check "3 of 3 replays hand every thread its own reads ($same did)" test "$same" = 3

# The started threads also write and read files of their own as they read the clock (Bun's pool
# threads open and stat files while its main thread reads): each file record names its thread,
# and a replay still hands every thread its own reads, whichever thread's file comes first.
rm -rf "$work/files" && mkdir -p "$work/files" && cd "$work/files"
"$td" run -q --thread-lanes --emit-tape "$work/files.tape" -- "$program" files > "$work/files.rec" 2> "$work/files.err"
check "recorded with files (exit 0)" test $? = 0
check "the worker threads' file records name their threads" \
  bash -c "grep '\"kind\":\"file_read\"' '$work/files.tape' | grep -q '\"thread\":\"t2\"' &&
           grep '\"kind\":\"file_write\"' '$work/files.tape' | grep -qE '\"thread\":\"t1@[0-9a-f]{8}\"'"
replay_thrice files files
check "3 of 3 replays with files hand every thread its own reads ($same did)" test "$same" = 3
cd "$work/ws"

# Statically linked: the floor serves every read, draw and file, keyed by thread as the preload's.
for variant in plain files; do
  rm -rf "$work/static" && mkdir -p "$work/static" && cd "$work/static"
  args=()
  [ "$variant" = files ] && args=(files)
  "$td" run -q --thread-lanes --emit-tape "$work/static-$variant.tape" -- "$static_program" \
    "${args[@]}" > "$work/static-$variant.rec" 2> "$work/static-$variant.err"
  check "static ($variant): recorded (exit 0)" test $? = 0
  check "static ($variant): the workers read in lanes t1 … t3, the child's threads in their own" \
    bash -c "grep -q '\"lane\":\"t3\"' '$work/static-$variant.tape' &&
             test \$(grep -oE '\"lane\":\"t[0-2]@[0-9a-f]{8}\"' '$work/static-$variant.tape' | sort -u | wc -l) = 3"
  program=$static_program replay_thrice "static-$variant" "${args[@]}"
  check "static ($variant): 3 of 3 replays hand every thread its own reads and draws ($same did)" \
    test "$same" = 3
done
check "static (files): the workers' file records name their threads" \
  bash -c "grep '\"kind\":\"file_read\"' '$work/static-files.tape' | grep -q '\"thread\":\"t2\"'"
cd "$work/ws"

# A tape from before thread lanes (the lanes taken off): every thread reads from the one lane,
# as then; the replay runs to its end.
sed -E 's/,"lane":"(t[0-9]+|after_wait)@?[0-9a-f]*"//; s/,"threads":true//' "$work/threads.tape" \
  > "$work/unlaned.tape"
cp -r "$work/threads.tape.cas" "$work/unlaned.tape.cas" 2>/dev/null
"$td" replay -q "$work/unlaned.tape" -- "$program" > "$work/unlaned.out" 2> "$work/unlaned.err"
check "a tape without thread lanes replays (exit 0)" test $? = 0
check "and prints every thread's reads" test "$(grep -c ' thread [0-9]:' "$work/unlaned.out")" = 7
finish "thread clocks"
