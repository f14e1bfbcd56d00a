#!/usr/bin/env bash
# The main job: builds tapedeck, records an example agent under the testbench (clock, files,
# a streaming LLM call to a stand-in server on loopback, a subprocess), replays it offline with
# the server stopped and the network closed, then lets the CLI judge and show the two tapes.
# Usage: scripts/demo.sh [OUT_DIR] (default out/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
scripts/install-deps.sh
scripts/build.sh release
td=build/release/tapedeck
mkdir -p "$out"

echo
echo "==> record, then replay offline (examples/agent_demo.cpp)"
build/release/examples/agent_demo "$out"
echo
echo "==> tapedeck fidelity $out/agent.tape $out/replay.tape --mode byte-identical"
"$td" fidelity "$out/agent.tape" "$out/replay.tape" --mode byte-identical
echo
echo "==> tapedeck stats $out/agent.tape"
"$td" stats "$out/agent.tape"
echo
echo "==> tapedeck show $out/agent.tape"
"$td" show "$out/agent.tape"
echo
echo "==> tapedeck verify $out/agent.tape"
"$td" verify "$out/agent.tape"
echo
echo "==> tapedeck view $out/agent.tape --against $out/replay.tape -o $out/agent.html"
"$td" view "$out/agent.tape" --against "$out/replay.tape" -o "$out/agent.html"
echo "open $out/agent.html in a browser to see the run as a timeline"
