#!/usr/bin/env bash
# No credential reaches a tape, including ones the run reveals late. Two agents call the stand-in
# LLM with a key (generated here, not a real one): (a) loaded from a .env file with python-dotenv,
# (b) written as a bearer token in the agent's own source. Each is recorded against the stand-in
# and replayed with it stopped: no byte of the key anywhere in the tape or its sidecar, the same
# stdout, `tapedeck scan` clean (exit 0). A tape written before redaction (the key planted in its
# sidecar) makes scan exit 1, naming the rule and not the key.
# Usage: secrets_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
source "$(dirname "$0")/../harness.sh"

"$python" -c "import dotenv" 2>/dev/null ||
  { echo "FAIL: python3-dotenv is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
key="sk-proj-$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 48)"
late_token="tdk$(head -c 64 /dev/urandom | base64 | tr -dc 'a-z0-9' | head -c 36)"

# The call both agents make; the key comes from `key` (the caller's).
cat > "$work/call.py" <<'PY'
import json, os, urllib.request
def ask(key):
    request = urllib.request.Request(
        os.environ["OPENAI_BASE_URL"] + "/chat/completions",
        data=json.dumps({"model": "standin-1", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
    with urllib.request.urlopen(request) as response:
        return json.load(response)["choices"][0]["message"]["content"]
PY

make_workspace() {  # make_workspace NAME: the agent's workspace, as a fresh checkout would be
  rm -rf "$work/ws" && mkdir -p "$work/ws" && cp "$work/call.py" "$work/ws/"
  case $1 in
    dotenv)
      printf 'OPENAI_API_KEY=%s\nMODEL=standin-1\n' "$key" > "$work/ws/.env"
      cat > "$work/ws/agent.py" <<'PY'
import os
from dotenv import load_dotenv
from call import ask
load_dotenv()
print("answer:", ask(os.environ["OPENAI_API_KEY"]))
PY
      ;;
    source)
      cat > "$work/ws/agent.py" <<PY
from call import ask
print("answer:", ask("$key"))
PY
      ;;
    late)  # a token of no known shape: a credential only once the proxy relays it
      cat > "$work/ws/agent.py" <<PY
from call import ask
print("answer:", ask("$late_token"))
PY
      ;;
  esac
}

for name in dotenv source late; do
  secret=$key
  [ "$name" = late ] && secret=$late_token
  start_standin
  make_workspace "$name"
  (cd "$work/ws" && env -u OPENAI_API_KEY "$td" run --emit-tape "$work/$name.tape" \
     --llm-upstream "http://127.0.0.1:$port" -- "$python" agent.py) > "$work/$name-run.out" 2> "$work/$name-run.err"
  check "$name: the recording ran the agent" grep -q "answer:" "$work/$name-run.out"
  stop_standin
  check "$name: no byte of the key on the tape or in its sidecar" \
    bash -c "! grep -rqF '$secret' '$work/$name.tape' '$work/$name.tape.cas'"
  check "$name: nor any long piece of it" \
    bash -c "! grep -rqF '${secret:8:24}' '$work/$name.tape' '$work/$name.tape.cas'"
  check "$name: the recording said what it kept redacted" grep -q "held a credential\\|learned during the run" "$work/$name-run.err"
  make_workspace "$name"
  (cd "$work/ws" && env -u OPENAI_API_KEY "$td" replay "$work/$name.tape" -- "$python" agent.py) \
    > "$work/$name-replay.out" 2> "$work/$name-replay.err"
  check "$name: the replay, the stand-in gone, prints what the recording printed" \
    diff "$work/$name-run.out" "$work/$name-replay.out"
  "$td" scan "$work/$name.tape" > "$work/$name.scan"
  check "$name: tapedeck scan finds nothing (exit 0)" test $? = 0
done

# A recording killed (SIGKILL, the whole run) after it learned a credential with no shape, before
# its end's scrub: the value was noted in the tape's scrub journal when it was learned, so verify
# warns, scan reports it, and verify --repair finishes the scrub.
start_standin
make_workspace late
cat > "$work/ws/agent.py" <<PY
import time
from call import ask
print("answer:", ask("$late_token"), flush=True)
time.sleep(60)
PY
(cd "$work/ws" && exec setsid env -u OPENAI_API_KEY "$td" run --emit-tape "$work/killed.tape" \
   --llm-upstream "http://127.0.0.1:$port" -- "$python" agent.py) > "$work/killed-run.out" 2>&1 &
run_pid=$!
for _ in $(seq 150); do grep -q "answer:" "$work/killed-run.out" && break; sleep 0.1; done
sleep 0.3  # the tape's next flush (every 100 ms) writes what the run did so far
check "killed: the run learned the token and noted it in the journal" test -s "$work/killed.tape.scrub"
kill -KILL -- -"$run_pid" 2>/dev/null
wait "$run_pid" 2>/dev/null
stop_standin
check "killed: the tape held the token when the run was killed (the test tests something)" \
  grep -rqF "$late_token" "$work/killed.tape" "$work/killed.tape.cas"
"$td" verify "$work/killed.tape" > /dev/null 2> "$work/killed.verify"
check "killed: verify passes and warns of the stopped scrub" \
  bash -c "test $? = 0 && grep -q 'scrub of 1 credential' '$work/killed.verify'"
"$td" scan "$work/killed.tape" > "$work/killed.scan" 2>/dev/null
check "killed: scan reports the token (exit 1), not its value" \
  bash -c "test $? = 1 && grep -q known-credential '$work/killed.scan' && ! grep -qF '$late_token' '$work/killed.scan'"
"$td" verify --repair "$work/killed.tape" > "$work/killed.repair" 2>&1
check "killed: verify --repair finishes the scrub" \
  bash -c "test $? = 0 && grep -q 'finished a stopped scrub' '$work/killed.repair'"
check "killed: then no byte of the token is left" \
  bash -c "! grep -rqF '$late_token' '$work/killed.tape' '$work/killed.tape.cas' && test ! -e '$work/killed.tape.scrub'"
"$td" scan "$work/killed.tape" > /dev/null 2>&1
check "killed: and scan is clean (exit 0)" test $? = 0

# A tape made before redaction: scan reports it, naming the rule, never printing the key.
cp "$work/dotenv.tape" "$work/leaky.tape" && cp -r "$work/dotenv.tape.cas" "$work/leaky.tape.cas"
printf 'OPENAI_API_KEY=%s\n' "$key" > "$work/leaky.tape.cas/$(printf '0%.0s' $(seq 64))"
"$td" scan "$work/leaky.tape" > "$work/leaky.scan"
check "scan of a leaky tape exits 1" test $? = 1
check "  naming the rule" grep -q "dotenv-credential\|openai-api-key" "$work/leaky.scan"
check "  and not the key" bash -c "! grep -qF '$key' '$work/leaky.scan'"
"$td" scan --redact "$work/dotenv.tape" > "$work/clean.redact" 2> "$work/clean.redact.err"
check "scan --redact of a clean tape redacts nothing and exits 0" \
  bash -c "test $? = 0 && grep -q '0 credential(s) redacted' '$work/clean.redact.err'"
cp "$work/leaky.tape" "$work/leaky2.tape" && cp -r "$work/leaky.tape.cas" "$work/leaky2.tape.cas"
"$td" scan --redact "$work/leaky2.tape" > "$work/leaky.redact" 2>&1
check "scan --redact also removes an entry no record names that holds one (exit 0)" \
  bash -c "test $? = 0 && ! grep -rqF '$key' '$work/leaky2.tape' '$work/leaky2.tape.cas'"
"$td" verify "$work/leaky.tape" > /dev/null 2> "$work/leaky.verify"
check "verify names the entry no record names that holds a credential, without failing" \
  bash -c "test $? = 0 && grep -q 'hold a credential' '$work/leaky.verify'"
"$td" verify --repair "$work/leaky.tape" > /dev/null 2>&1
"$td" scan "$work/leaky.tape" > /dev/null
check "after verify --repair, nothing is left for scan to find (exit 0)" test $? = 0
check "  and no byte of the key" bash -c "! grep -rqF '$key' '$work/leaky.tape' '$work/leaky.tape.cas'"
"$td" scan "$work/nowhere.tape" 2> /dev/null
check "scan of a tape that is not there exits 2" test $? = 2

# A key on the command line: the tape's header and its manifest (what `check` replays) keep
# neither it nor any part of it, and scan looks at both.
mkdir -p "$work/argv" && (cd "$work/argv" && "$td" run -q --emit-tape "$work/argv.tape" -- \
  /bin/echo --api-key "$key") > /dev/null 2>&1
check "a key on the command line reaches neither the header nor the manifest" \
  bash -c "! grep -qF '$key' '$work/argv.tape' '$work/argv.tape.manifest' &&
           grep -q 'redacted by tapedeck' '$work/argv.tape.manifest'"
"$td" scan "$work/argv.tape" > /dev/null
check "  and scan finds nothing (exit 0)" test $? = 0
{ printf '{"type":"header","version":1,"harn_version":"0.1.0","started_at_unix_ms":1,'
  printf '"script_path":"x","argv":["x","%s"]}\n' "$key"; } > "$work/old-header.tape"
"$td" scan "$work/old-header.tape" > "$work/old-header.scan"
check "scan reports a key in a header written before this (exit 1), never printing it" \
  bash -c "[ $? = 1 ] && grep -q 'header command line' '$work/old-header.scan' &&
           ! grep -qF '$key' '$work/old-header.scan'"

finish secrets
