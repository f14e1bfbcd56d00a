#!/usr/bin/env bash
# The main job: builds tapedeck, records the example Python agent (examples/agents/agent.py:
# clock, sleep, workspace files, a subprocess, an LLM called over HTTP, plain and streamed)
# under `tapedeck run` against a stand-in LLM server, then stops the server and replays the
# agent offline with the network closed, and lets `tapedeck fidelity` judge the two tapes.
# Usage: scripts/demo.sh [OUT_DIR] (default out/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-out}" && cd "${1:-out}" && pwd)
scripts/install-deps.sh
scripts/build.sh release
td=$PWD/build/release/tapedeck
agents=$PWD/examples/agents
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)

# The agent works in a copy of its workspace, fresh for each run (the recording changes it).
fresh_workspace() { rm -rf "$out/workspace" && cp -r "$agents/workspace" "$out/workspace"; }

echo
echo "==> starting the stand-in LLM server (examples/agents/standin_llm.py)"
"$python" "$agents/standin_llm.py" > "$out/standin.log" &
standin=$!
trap 'kill $standin 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out/standin.log" && break; sleep 0.1; done
port=$(sed -n 's/listening on //p' "$out/standin.log")
echo "listening on 127.0.0.1:$port"

echo
echo "==> tapedeck run --emit-tape run.tape --llm-upstream http://127.0.0.1:$port -- python3 agent.py"
fresh_workspace
(cd "$out/workspace" && OPENAI_API_KEY=sk-demo-key "$td" run --emit-tape "$out/run.tape" \
   --overwrite --llm-upstream "http://127.0.0.1:$port" -- "$python" "$agents/agent.py") \
  | tee "$out/run.out"

echo
echo "==> stopping the stand-in server: the replay has no LLM and no network"
kill $standin && wait $standin 2>/dev/null || true

echo
echo "==> tapedeck replay run.tape --emit-tape replay.tape -- python3 agent.py"
fresh_workspace
(cd "$out/workspace" && OPENAI_API_KEY=sk-demo-key "$td" replay "$out/run.tape" \
   --emit-tape "$out/replay.tape" --overwrite -- "$python" "$agents/agent.py") \
  | tee "$out/replay.out"
diff "$out/run.out" "$out/replay.out" > /dev/null && echo "(the replay printed exactly what the recording printed)"

echo
echo "==> tapedeck fidelity run.tape replay.tape --mode semantic"
"$td" fidelity "$out/run.tape" "$out/replay.tape" --mode semantic

echo
echo "==> tapedeck stats run.tape"
"$td" stats "$out/run.tape"

echo
echo "==> tapedeck show run.tape (all but the clock reads)"
"$td" show "$out/run.tape" | grep -v " clock_read " || true

echo
echo "==> tapedeck view run.tape --against replay.tape -o agent.html"
"$td" view "$out/run.tape" --against "$out/replay.tape" -o "$out/agent.html"
echo "open $out/agent.html in a browser to see the run as a timeline"
