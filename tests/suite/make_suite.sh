#!/usr/bin/env bash
# Records a suite of N tapes from the example agents (the Python agent and the bash agent, in
# turn), each in a workspace of its own, against a stand-in LLM server that is stopped at the end:
#   OUT/tapes/NN.tape (+ .cas, .manifest)   OUT/ws/NN (reset to the pristine workspace)
#   OUT/agents/   the agents; tapes listed in DIVERGE ran copies (agent_NN.py / agent_NN.sh)
# that the caller may change afterwards to make those tapes diverge.
# Usage: make_suite.sh TAPEDECK EXAMPLES OUT N [DIVERGE...]
set -euo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
out=$3
count=$4
shift 4
diverge=" $* "
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)

mkdir -p "$out/tapes" "$out/ws"
out=$(realpath "$out")
cp -r "$examples/agents" "$out/agents"

rm -f "$out/standin.out"  # (a stale "listening on" would name a port nothing listens on)
"$python" "$out/agents/standin_llm.py" > "$out/standin.out" &
standin=$!
trap 'kill $standin 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out/standin.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/listening on //p' "$out/standin.out")
[ -n "$port" ] || { echo "make_suite: the stand-in LLM server did not start" >&2; exit 1; }

record() {  # record NN: one tape, in its own workspace, reset afterwards
  local n=$1 program agent
  if ((10#$n % 2)); then program=$python agent=agent.py; else program=bash agent=agent.sh; fi
  if [[ $diverge == *" $n "* ]]; then
    cp "$out/agents/$agent" "$out/agents/agent_$n.${agent##*.}"
    agent=agent_$n.${agent##*.}
  fi
  cp -r "$out/agents/workspace" "$out/ws/$n"
  (cd "$out/ws/$n" && OPENAI_API_KEY=sk-suite-key "$td" run -q --emit-tape "$out/tapes/$n.tape" \
     --llm-upstream "http://127.0.0.1:$port" -- "$program" "../../agents/$agent") \
    > "$out/ws/$n.out" 2>&1 || { echo "make_suite: recording $n failed:" >&2; cat "$out/ws/$n.out" >&2; return 1; }
  # A suite replays against a fresh checkout: the workspace as the recording found it.
  rm -rf "$out/ws/$n" && cp -r "$out/agents/workspace" "$out/ws/$n"
}

# The agents sleep a second each: several recordings at once keep this short.
recordings=()
for i in $(seq -w 1 "$count"); do
  record "$i" &
  recordings+=($!)
  if ((${#recordings[@]} >= 8)); then wait "${recordings[0]}" || true; recordings=("${recordings[@]:1}"); fi
done
for pid in "${recordings[@]}"; do wait "$pid" || true; done  # not the stand-in's
made=$(find "$out/tapes" -name '*.tape.manifest' | wc -l)
[ "$made" = "$count" ] || { echo "make_suite: $made of $count recordings succeeded" >&2; exit 1; }
echo "make_suite: $count tapes in $out/tapes"
