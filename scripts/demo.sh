#!/usr/bin/env bash
# The main job: builds tapedeck, records an example agent run through the library, and shows
# what the CLI says of the tape. Usage: scripts/demo.sh [OUT_DIR] (default out/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
scripts/install-deps.sh
scripts/build.sh release
td=build/release/tapedeck
mkdir -p "$out"
echo
echo "==> recording an agent run (examples/record_host.cpp) to $out/agent.tape"
build/release/examples/record_host "$out/agent.tape"
echo
echo "==> tapedeck stats $out/agent.tape"
"$td" stats "$out/agent.tape"
echo
echo "==> tapedeck verify $out/agent.tape"
"$td" verify "$out/agent.tape"
echo
echo "==> tapedeck show $out/agent.tape --kind llm_call"
"$td" show "$out/agent.tape" --kind llm_call
echo
echo "==> tapedeck fmt $out/agent.tape (the tape is already canonical: fmt gives the same bytes)"
"$td" fmt "$out/agent.tape" | cmp - "$out/agent.tape" && echo "canonical: yes"
