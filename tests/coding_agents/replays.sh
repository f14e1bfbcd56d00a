# Sourced by the coding-agent tests, after harness.sh, with `agent` defined (it runs its
# arguments, a tapedeck command line, with the agent's command after `--`).
# record_task NAME: the agent does the stand-in's task under `tapedeck run`, taped in
# $work/NAME.tape (its output in $work/rec.out, its time in recorded_ms), with the checks every
# agent's recording must pass: it did the task, the tape holds its write and read of notes.txt,
# and the key ($key) is nowhere on the tape or its sidecar.
record_task() {
  local name=$1 started
  start_standin
  started=$(now_ms)
  agent "$td" run -q --emit-tape "$work/$name.tape" --llm-upstream "http://127.0.0.1:$port" \
    > "$work/rec.out" 2> "$work/rec.err"
  check "recorded (exit 0)" test $? = 0
  recorded_ms=$(($(now_ms) - started))
  stop_standin
  check "the recording did the task: notes.txt written and read back" \
    grep -q "the plan: start small" "$work/rec.out"
  check "the tape holds the write of notes.txt" has "$work/$name.tape" 'file_write .*"notes.txt"'
  check "the tape holds the read of notes.txt" has "$work/$name.tape" 'file_read .*"notes.txt"'
  check "the key is nowhere on the tape or its sidecar" \
    bash -c "! grep -rqF '$key' '$work/$name.tape' '$work/$name.tape.cas'"
}

# replays_of NAME: replays $work/NAME.tape three times (bounded, each taping its replay) and checks
# each one's semantic fidelity; `same` counts those that exit 0 and print $work/rec.out byte for
# byte, `replay_ms` sums their wall time. A replay that differs says how it ended.
now_ms() { date +%s%3N; }

# agent_under_test BIN NAME WHY: skipped (77) unless CODING_AGENTS is set, saying WHY; fails when
# npm ci has not installed BIN; sets agent_program to it.
agent_under_test() {
  if [ -z "${CODING_AGENTS:-}" ]; then
    echo "skipped: set CODING_AGENTS=1 to run it ($2 $3: see above)"
    exit 77
  fi
  agent_program=$here/node_modules/.bin/$1
  [ -x "$agent_program" ] ||
    { echo "FAIL: $2 is missing from $here (scripts/install-deps.sh runs npm ci there)"; exit 1; }
}
replays_of() {
  local name=$1 round started status
  same=0
  replay_ms=0
  for round in 1 2 3; do
    started=$(now_ms)
    bounded 120 agent "$td" replay -q "$work/$name.tape" --emit-tape "$work/replay$round.tape" \
      > "$work/rep$round.out" 2> "$work/rep$round.err"
    status=$?
    replay_ms=$((replay_ms + $(now_ms) - started))
    if [ $status = 0 ] && cmp -s "$work/rec.out" "$work/rep$round.out"; then
      same=$((same + 1))
    else
      echo "  replay $round (exit $status): $(grep -v 'network denied' "$work/rep$round.err" | head -c 600)" >&2
    fi
    check "replay $round: semantic fidelity passes" \
      "$td" fidelity "$work/$name.tape" "$work/replay$round.tape" --mode semantic
  done
  check "3 of 3 replays exit 0 and print the recording's JSON byte for byte ($same did)" \
    test "$same" = 3
  echo "recording ${recorded_ms} ms; replays $((replay_ms / 3)) ms each" \
    "($((replay_ms * 100 / 3 / recorded_ms))% of it)"
}
