#!/usr/bin/env bash
# Compressed tapes (*.tape.zst), as ratios measured side by side in one run (medians of N rounds):
#   size     the example Python agent's tape (examples/agents, against the stand-in LLM) and a
#            clock-heavy program's (1,000,000 clock_gettime), plain against compressed: the
#            target is at least 20x smaller
#   fmt      `tapedeck fmt` of a 1,000,000-record tape (tape_gen small, the seed anchor's workload) to
#            /dev/null, reading it compressed against reading it plain: at most 1.5x
#   record   the clock-heavy program under `run --emit-tape X.tape.zst` against
#            `--emit-tape X.tape`, runs alternating: at most 1.05x
#
# Usage: bench/compress.sh [--rounds N] [--dir DIR] (default 5 rounds; DIR on tmpfs when there
# is room). Expects a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
td=$PWD/build/release/tapedeck
clock_program=$PWD/build/release/bench/clock_calls
tape_gen=$PWD/build/release/bench/tape_gen
agents=$PWD/examples/agents
for tool in "$td" "$clock_program" "$tape_gen"; do
  [ -x "$tool" ] || { echo "bench/compress.sh: build first (scripts/build.sh release): $tool" >&2; exit 2; }
done
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
scratch_dir compress $((512 * 1024))
echo "(tapes in $dir)"

size_row() {  # size_row NAME PLAIN COMPRESSED
  local plain compressed
  plain=$(stat -c %s "$2")
  compressed=$(stat -c %s "$3")
  printf '%-44s plain %10s bytes   compressed %9s bytes   %6sx smaller\n' "$1" "$plain" \
    "$compressed" "$(ratio "$plain" "$compressed")"
}

echo "== tape sizes"
"$python" "$agents/standin_llm.py" > "$dir/standin.log" &
standin=$!
trap 'kill $standin 2> /dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$dir/standin.log" && break; sleep 0.1; done
port=$(sed -n 's/listening on //p' "$dir/standin.log")
for form in tape tape.zst; do
  rm -rf "$dir/workspace" && cp -r "$agents/workspace" "$dir/workspace"
  (cd "$dir/workspace" && OPENAI_API_KEY=sk-bench "$td" run -q --overwrite --emit-tape "$dir/agent.$form" \
    --llm-upstream "http://127.0.0.1:$port" -- "$python" "$agents/agent.py") > /dev/null
done
kill $standin
size_row "example agent (python3 agent.py)" "$dir/agent.tape" "$dir/agent.tape.zst"
"$td" run -q --overwrite --emit-tape "$dir/clock.tape" -- "$clock_program" > /dev/null
"$td" run -q --overwrite --emit-tape "$dir/clock.tape.zst" -- "$clock_program" > /dev/null
size_row "1,000,000 clock_gettime" "$dir/clock.tape" "$dir/clock.tape.zst"
"$tape_gen" 1000000 1 "$dir/gen.tape" small > /dev/null 2>&1
"$td" fmt -q "$dir/gen.tape" -o "$dir/gen.tape.zst"
size_row "tape_gen 1,000,000 small records" "$dir/gen.tape" "$dir/gen.tape.zst"

echo
echo "== fmt of the 1,000,000-record tape to /dev/null (medians of $rounds, alternating)"
rm -f "$dir"/{fmt_plain,fmt_zst}.samples
for ((round = 0; round < rounds; round++)); do
  seconds "$td" fmt "$dir/gen.tape" >> "$dir/fmt_plain.samples"
  seconds "$td" fmt "$dir/gen.tape.zst" >> "$dir/fmt_zst.samples"
done
plain=$(median < "$dir/fmt_plain.samples")
zst=$(median < "$dir/fmt_zst.samples")
printf '%-44s plain %7ss   compressed %7ss   %5sx (target <= 1.5x)\n' "fmt" "$plain" "$zst" \
  "$(ratio "$zst" "$plain")"

echo
echo "== recording 1,000,000 clock_gettime (medians of $rounds, alternating)"
rm -f "$dir"/{rec_plain,rec_zst}.samples
for ((round = 0; round < rounds; round++)); do
  seconds "$td" run -q --overwrite --emit-tape "$dir/r.tape" -- "$clock_program" >> "$dir/rec_plain.samples"
  seconds "$td" run -q --overwrite --emit-tape "$dir/r.tape.zst" -- "$clock_program" >> "$dir/rec_zst.samples"
done
plain=$(median < "$dir/rec_plain.samples")
zst=$(median < "$dir/rec_zst.samples")
printf '%-44s plain %7ss   compressed %7ss   %5sx (target <= 1.05x)\n' "run --emit-tape" "$plain" \
  "$zst" "$(ratio "$zst" "$plain")"
