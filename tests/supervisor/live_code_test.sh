#!/usr/bin/env bash
# A replay tests the agent as it is now. Two agents whose code sits in their workspace, as in a
# real project: a Python agent (agent.py importing helper.py, reading question.txt) and a Node
# agent on the official OpenAI SDK installed in the workspace's node_modules. Each is recorded
# once against the stand-in, then replayed offline:
#   unchanged: exit 0, the same stdout, semantic fidelity passes;
#   its prompt edited in the source: the replay stops on the LLM request, naming the changed part;
#   a comment added: the replay passes semantic, fidelity and check print the code-change note;
#   (Node) the SDK in node_modules edited so that the request changes: not a pass;
#   a data file edited after recording: served as recorded, and the replay says so.
# Then `tapedeck check` on both tapes, one agent changed in behaviour and one only in a comment:
# exit 1, a FAIL naming the request's difference, a PASS with the note. Then the same agents
# started through timeout, a shell script, npm run, npx and make: the replay runs the way to the
# process that called the LLM again and serves its inputs; with the prompt edited none passes.
# A root that only runs a tool tested nothing: not counted as a pass (VOID).
# Usage: live_code_test.sh TAPEDECK NODE_MODULES
set -uo pipefail
td=$(realpath "$1")
modules=$(realpath "$2")
examples=$(realpath "$(dirname "$0")/../../examples")
source "$(dirname "$0")/../harness.sh"
export OPENAI_API_KEY=$(printf "sk-%s" live-code-test)  # built: the secrets test scans this tree

[ -d "$modules/openai" ] || { echo "FAIL: $modules/openai is missing (scripts/install-deps.sh runs npm ci in tests/proxy)" >&2; exit 1; }

py="$work/py" node_ws="$work/node" tapes="$work/tapes"
mkdir -p "$py" "$node_ws" "$tapes"
cat > "$py/agent.py" <<'PY'
import json, os, urllib.request
from helper import PROMPT

BASE = os.environ["OPENAI_BASE_URL"].rstrip("/")
question = open("question.txt").read().strip()
body = json.dumps({"model": "standin-1",
                   "messages": [{"role": "user", "content": PROMPT + " " + question}]}).encode()
request = urllib.request.Request(BASE + "/chat/completions", data=body, headers={
    "Content-Type": "application/json", "Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
with urllib.request.urlopen(request, timeout=30) as response:
    print(json.load(response)["choices"][0]["message"]["content"])
print("question:", question)
PY
echo 'PROMPT = "Plan the work:"' > "$py/helper.py"
echo "what comes first?" > "$py/question.txt"

cp -r "$modules" "$node_ws/node_modules"
cat > "$node_ws/agent.mjs" <<'JS'
import OpenAI from "openai";
import { readFileSync } from "node:fs";

const topic = readFileSync("topic.txt", "utf8").trim();
const client = new OpenAI();
const answer = await client.chat.completions.create({
  model: "standin-1",
  messages: [{ role: "user", content: `Name the first test for ${topic}` }],
});
console.log(answer.choices[0].message.content);
console.log("topic:", topic);
JS
echo "the tape deck" > "$node_ws/topic.txt"
# The ways people start agents: a shell script, npm run, npx, make.
printf 'echo starting\npython3 agent.py\necho done\n' > "$py/run.sh"
cat > "$node_ws/package.json" <<'JSON'
{"name": "agent", "version": "1.0.0", "private": true, "scripts": {"agent": "node agent.mjs"}}
JSON
printf 'agent:\n\tnode agent.mjs\n' > "$node_ws/Makefile"
mkdir -p "$node_ws/node_modules/.bin"
printf '#!/bin/sh\nexec node "$(dirname "$0")/../../agent.mjs"\n' > "$node_ws/node_modules/.bin/node-agent"
chmod +x "$node_ws/node_modules/.bin/node-agent"

start_standin
upstream="http://127.0.0.1:$port"
(cd "$py" && "$td" run -q --emit-tape "$tapes/py.tape" --llm-upstream "$upstream" -- python3 agent.py > "$work/py.out")
check "python: the recording ran" grep -q "Plan the work: what comes first" "$work/py.out"
(cd "$node_ws" && "$td" run -q --emit-tape "$tapes/node.tape" --llm-upstream "$upstream" -- node agent.mjs > "$work/node.out")
check "node: the recording ran" grep -q "Name the first test for the" "$work/node.out"
# Agents started the ways people start them: through a wrapper, a shell script, a package runner.
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false npm_config_fund=false
wrappers=("py|timeout|timeout 60 python3 agent.py" "py|script|sh run.sh"
          "node|npm|npm run --silent agent" "node|npx|npx --no-install node-agent"
          "node|make|make -s agent")
for wrapper in "${wrappers[@]}"; do
  IFS='|' read -r side name command <<< "$wrapper"
  if [ "$side" = py ]; then ws=$py; else ws=$node_ws; fi
  (cd "$ws" && "$td" run -q --emit-tape "$work/$name.tape" --llm-upstream "$upstream" -- $command > "$work/$name.out")
done
(cd "$py" && "$td" run -q --emit-tape "$work/tools-only.tape" -- sh -c 'wc -w question.txt' > /dev/null)
(cd "$py" && "$td" run -q --emit-tape "$work/boxed.tape" --black-box 'python3*' --llm-upstream "$upstream" \
  -- timeout 60 python3 agent.py > "$work/boxed.out")
(cd "$py" && "$td" run -q --emit-tape "$work/helper-data.tape" --data helper.py --llm-upstream "$upstream" -- python3 agent.py > /dev/null)
stop_standin
check "--data is kept in the manifest" grep -q '"data":\["helper.py"\]' "$work/helper-data.tape.manifest"

# The tape marks code reads as code, and data reads not.
check "python: agent.py and helper.py are read as code" \
  test "$(grep -c '"path":"\(agent\|helper\).py".*"code":true' "$tapes/py.tape")" -ge 2
check "python: question.txt is read as data" \
  bash -c "grep '\"path\":\"question.txt\"' '$tapes/py.tape' | grep -vq '\"code\":true'"
check "node: the SDK's modules are read as code" \
  grep -q '"path":"node_modules/openai/[^"]*".*"code":true' "$tapes/node.tape"

# replay NAME WORKSPACE COMMAND...: replays $tapes/NAME.tape, its tape to $work/NAME.N.tape.
take=0
replay() {
  local name=$1 ws=$2
  shift 2
  take=$((take + 1))
  (cd "$ws" && "$td" replay -q "$tapes/$name.tape" --emit-tape "$work/$name.$take.tape" -- "$@" \
    > "$work/$name.$take.out" 2> "$work/$name.$take.err")
}
semantic() { "$td" fidelity "$tapes/$1.tape" "$work/$1.$take.tape" --mode semantic > "$work/$1.$take.fidelity"; }

for agent in py node; do
  if [ $agent = py ]; then ws=$py cmd=(python3 agent.py); else ws=$node_ws cmd=(node agent.mjs); fi
  replay $agent "$ws" "${cmd[@]}"
  check "$agent: unchanged, the replay exits 0" test $? = 0
  check "$agent: unchanged, it prints what the recording printed" diff "$work/$agent.out" "$work/$agent.$take.out"
  check "$agent: unchanged, semantic fidelity passes" semantic $agent
  check "$agent: unchanged, no code-change note" bash -c "! grep -q '^note:' '$work/$agent.$take.fidelity'"
done

# A comment added: the same behaviour, a note.
echo "# reviewed" >> "$py/agent.py"
echo "// reviewed" >> "$node_ws/agent.mjs"
for agent in py node; do
  if [ $agent = py ]; then ws=$py cmd=(python3 agent.py) file=agent.py; else ws=$node_ws cmd=(node agent.mjs) file=agent.mjs; fi
  replay $agent "$ws" "${cmd[@]}"
  check "$agent: a comment added, the replay exits 0" test $? = 0
  check "$agent: a comment added, semantic fidelity passes" semantic $agent
  check "$agent: a comment added, fidelity notes the change" \
    grep -q "^note: code changed since the recording: $file (recorded " "$work/$agent.$take.fidelity"
done

# The prompt edited in the source: the request changes, the replay stops and names the part.
cp "$py/helper.py" "$work/helper.py.orig"
echo 'PROMPT = "Plan the job:"' > "$py/helper.py"
replay py "$py" python3 agent.py
check "python: the prompt edited, the replay stops (exit 2)" test $? = 2
check "python: the stop names the changed part of the request" grep -q 'replay: .*Plan the job: what comes first' "$work/py.$take.err"
cp "$node_ws/agent.mjs" "$work/agent.mjs.orig"
sed -i 's/Name the first test for/Name the last test for/' "$node_ws/agent.mjs"
replay node "$node_ws" node agent.mjs
check "node: the prompt edited, the replay stops (exit 2)" test $? = 2
check "node: the stop names the changed part of the request" grep -q 'replay: .*Name the last test for' "$work/node.$take.err"
cp "$work/agent.mjs.orig" "$node_ws/agent.mjs"

# The SDK in node_modules edited so that its request changes: not a pass.
completions="$node_ws/node_modules/openai/resources/chat/completions/completions.mjs"
cp "$completions" "$work/completions.orig"
sed -i "s|create(body, options) {|create(body, options) { body = { ...body, temperature: 0.25 };|" "$completions"
check "node: the SDK edited for the test" grep -q 'temperature: 0.25' "$completions"
replay node "$node_ws" node agent.mjs
check "node: the SDK's request edited, the replay is not a pass (exit 2)" test $? = 2
check "node: the stop names the SDK's addition" grep -q '"temperature":0.25' "$work/node.$take.err"
cp "$work/completions.orig" "$completions"

# A data file edited after recording: served as recorded, and said.
cp "$py/question.txt" "$work/question.orig"
echo "what comes last?" > "$py/question.txt"
cp "$work/helper.py.orig" "$py/helper.py"
replay py "$py" python3 agent.py
check "python: data edited, the replay exits 0" test $? = 0
check "python: data edited, the replay prints what the recording printed" diff "$work/py.out" "$work/py.$take.out"
check "python: data edited, the replay notes it" \
  grep -q "warning: data changed since the recording: question.txt (recorded .*, now .*), served as recorded" "$work/py.$take.err"
check "python: the workspace keeps its edit" grep -q "comes last" "$py/question.txt"
(cd "$py" && "$td" replay -q "$tapes/py.tape" --code question.txt -- python3 agent.py > /dev/null 2> "$work/code-flag.err")
code_flag_exit=$?
check "python: --code reads the edited data file as it is now: the request changes (exit 2)" \
  test "$code_flag_exit" = 2
check "  and the stop names it" grep -q 'what comes last' "$work/code-flag.err"
cp "$work/question.orig" "$py/question.txt"

# A suite: the Python agent's prompt changed (behaviour), the Node agent's comment (no behaviour).
echo 'PROMPT = "Plan the job:"' > "$py/helper.py"
"$td" check "$tapes" --json > "$work/check.json"
check "check: exit 1" test $? = 1
check "check: the changed agent fails, naming the request's difference" \
  "$python" -c '
import json, sys
cases = {c["tape"].rsplit("/", 1)[-1]: c for c in json.load(open(sys.argv[1]))["cases"]}
py, node = cases["py.tape"], cases["node.tape"]
assert py["status"] == "diverged", py
assert "Plan the job: what comes first" in py["message"], py["message"]
assert any(n.startswith("code changed since the recording: helper.py") for n in py["notes"]), py
assert node["status"] == "passed", node
assert any(n.startswith("code changed since the recording: agent.mjs") for n in node["notes"]), node
' "$work/check.json"
"$td" check "$tapes" > "$work/check.txt" 2>&1
check "check: the text report prints the PASS's note" \
  grep -q "note: code changed since the recording: agent.mjs" "$work/check.txt"

# Recorded with --data helper.py: its edit is served as recorded, by replay and by check (which
# takes --data from the manifest), and noted.
"$td" check "$work/helper-data.tape" > "$work/helper-data.check" 2>&1
check "a --data file edited: check passes (exit 0)" test $? = 0
check "  and notes the data change" \
  grep -q "note: data changed since the recording: helper.py" "$work/helper-data.check"

# The agent behind a wrapper is the agent: the processes on the way to the one that called the
# LLM run again, their inputs served; with the prompt edited, none is a pass.
cp "$work/helper.py.orig" "$py/helper.py"
for wrapper in "${wrappers[@]}"; do
  IFS='|' read -r side name command <<< "$wrapper"
  if [ "$side" = py ]; then ws=$py; else ws=$node_ws; fi
  check "$name: the recording taped the agent's LLM call" grep -q '"kind":"llm_call"' "$work/$name.tape"
  check "$name: and marked the way to it descended" grep -q '"descended":true' "$work/$name.tape"
  (cd "$ws" && "$td" replay -q "$work/$name.tape" --emit-tape "$work/$name.replay.tape" --json \
    -- $command > "$work/$name.replay.out" 2> "$work/$name.replay.err")
  check "$name: the replay exits 0" test $? = 0
  check "$name: it prints what the recording printed" diff "$work/$name.out" "$work/$name.replay.out"
  check "$name: the agent's LLM call was served, not played back" \
    grep -q '"kind":"llm_call"' "$work/$name.replay.tape"
  check "$name: the replay tested something" grep -q '"hollow":false' "$work/$name.replay.err"
  check "$name: semantic fidelity passes" \
    "$td" fidelity "$work/$name.tape" "$work/$name.replay.tape" --mode semantic
done
"$td" check --dry-run "$work/timeout.tape" > "$work/timeout.dry"
check "check --dry-run lists what a tape has run again" \
  grep -q '^#   runs again when started: python3 agent.py$' "$work/timeout.dry"
echo 'PROMPT = "Plan the job:"' > "$py/helper.py"
sed -i 's/Name the first test for/Name the last test for/' "$node_ws/agent.mjs"
for wrapper in "${wrappers[@]}"; do
  IFS='|' read -r side name command <<< "$wrapper"
  if [ "$side" = py ]; then ws=$py; else ws=$node_ws; fi
  (cd "$ws" && "$td" replay -q "$work/$name.tape" -- $command > /dev/null 2> "$work/$name.edited.err")
  check "$name: with the prompt edited, the replay stops (exit 2)" test $? = 2
  check "$name:   naming the changed request" grep -q 'replay: .*\(Plan the job\|Name the last test\)' "$work/$name.edited.err"
done
cp "$work/helper.py.orig" "$py/helper.py"
cp "$work/agent.mjs.orig" "$node_ws/agent.mjs"

# --black-box keeps a subprocess that calls the LLM a black box: its call goes upstream, untaped,
# and the replay plays it back (so it tests nothing).
check "--black-box: the recording ran" grep -q "Plan the work" "$work/boxed.out"
check "--black-box: no LLM call on the tape, nothing descended" \
  bash -c "! grep -q '\"kind\":\"llm_call\"\|\"descended\"' '$work/boxed.tape'"
(cd "$py" && "$td" replay "$work/boxed.tape" --json -- timeout 60 python3 agent.py > "$work/boxed.replay.out" 2> "$work/boxed.err")
check "--black-box: the replay plays it back" diff "$work/boxed.out" "$work/boxed.replay.out"
check "--black-box:   and says it tested nothing" grep -q '"hollow":true' "$work/boxed.err"

# A root that only runs a tool: its replay plays everything back, which tests nothing.
(cd "$py" && "$td" replay "$work/tools-only.tape" --json -- sh -c 'wc -w question.txt' > /dev/null 2> "$work/tools-only.err")
check "a tools-only replay says it tested nothing" grep -q '"hollow":true' "$work/tools-only.err"
"$td" check "$work/tools-only.tape" > "$work/tools-only.check" 2>&1
tools_only_exit=$?
check "check does not count it as a pass (exit 1)" test "$tools_only_exit" = 1
check "  and says it tested nothing (VOID)" grep -q '^VOID .*tools-only.tape' "$work/tools-only.check"

finish live_code
