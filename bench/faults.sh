#!/usr/bin/env bash
# What a faulted replay costs: the official OpenAI Node SDK (tests/proxy/fault_agent.mjs) recorded
# once against the stand-in LLM, then replayed offline unfaulted and with --fault llm#1=429,
# llm#1=500 and llm#*=429 in alternating rounds. The SDK's own backoff before its retries is half
# a second to a second and more per retry; on the replay's clock it costs nothing, so each faulted
# replay should stay under 0.5 s of wall time (target) and near the unfaulted one (ratio).
#
# Usage: bench/faults.sh [--rounds N] [--dir DIR] (default 5 rounds). Expects a release build and
# tests/proxy's node_modules (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
td=$PWD/build/release/tapedeck
agent=$PWD/tests/proxy/fault_agent.mjs
[ -x "$td" ] || { echo "bench/faults.sh: build first (scripts/build.sh release)" >&2; exit 2; }
[ -d tests/proxy/node_modules/openai ] || { echo "bench/faults.sh: run scripts/install-deps.sh" >&2; exit 2; }
scratch_dir faults $((64 * 1024))
export OPENAI_API_KEY
OPENAI_API_KEY=$(printf "sk-%s" bench-placeholder)  # the SDK insists on one; nothing checks it

python3 examples/agents/standin_llm.py > "$dir/standin.out" &
standin=$!
trap 'kill $standin 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$dir/standin.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/listening on //p' "$dir/standin.out")
(cd "$dir" && "$td" run -q --emit-tape "$dir/run.tape" --llm-upstream "http://127.0.0.1:$port" \
   -- node "$agent" > /dev/null)
kill $standin

faults=(none 'llm#1=429' 'llm#1=500' 'llm#*=429')
for ((round = 0; round < rounds; round++)); do
  for i in "${!faults[@]}"; do
    spec=${faults[$i]}
    args=()
    [ "$spec" = none ] || args=(--fault "$spec")
    (cd "$dir" && seconds "$td" replay -q "$dir/run.tape" "${args[@]}" -- node "$agent") >> "$dir/$i.samples"
  done
done
unfaulted=$(median < "$dir/0.samples")
printf 'replay of the OpenAI Node SDK agent (medians of %s): unfaulted %ss\n' "$rounds" "$unfaulted"
for i in 1 2 3; do
  took=$(median < "$dir/$i.samples")
  printf '  --fault %-10s %ss (x%s of unfaulted), %s under 0.5 s\n' "${faults[$i]}" "$took" \
    "$(ratio "$took" "$unfaulted")" "$(awk -v t="$took" 'BEGIN {print (t < 0.5) ? "meets" : "MISSES"}')"
done
