#!/usr/bin/env bash
# tapedeck check: a suite of 50 tapes recorded from the example agents, two of whose programs
# are changed afterwards. The suite exits 1; its JUnit report, read by a real XML parser, holds
# 50 testcases and exactly those two failures, each naming its first divergence. The rest: the
# JSON report, relative manifests (a moved suite still replays), a replay that hangs (killed at
# the timeout, nothing left running), bad input (exit 2, one line, nothing run).
# Usage: check_test.sh TAPEDECK EXAMPLES
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
here=$(dirname "$(realpath "$0")")
source "$here/../harness.sh"

suite=$work/suite
bash "$here/make_suite.sh" "$td" "$examples" "$suite" 50 07 30 > "$work/make.out" 2>&1 ||
  { cat "$work/make.out"; echo "FAIL: the suite could not be recorded"; exit 1; }
check "every recording wrote its manifest, paths relative to the tapes' folder" \
  grep -q '"cwd":"../ws/01","workspace":"../ws/01"' "$suite/tapes/01.tape.manifest"

# The unchanged suite passes, and its replays' temporary folder goes away.
export TMPDIR=$work/tmp && mkdir -p "$TMPDIR"
"$td" check "$suite/tapes/01.tape" "$suite/tapes/02.tape" > "$work/two.out" 2>&1
check "two unchanged tapes pass (exit 0)" test $? = 0
check "  and the replays' temporary folder is removed" \
  bash -c "[ -z \"\$(ls -A '$TMPDIR')\" ]"

# Two programs change after their recordings: one prints a line more (Python), one (bash) too.
sed -i 's/^    return 0$/    print("one more line")\n    return 0/' "$suite/agents/agent_07.py"
echo 'echo "one more line"' >> "$suite/agents/agent_30.sh"

(cd "$suite" && "$td" check tapes -j 2 --junit "$work/report.xml" --replays "$work/replays") \
  > "$work/check.out" 2>&1
check "a suite with two diverging tapes exits 1" test $? = 1
check "  one line per tape, and the summary" \
  bash -c "[ \$(grep -c '^PASS ' '$work/check.out') = 48 ] &&
           grep -q 'check: 50 tapes, 48 passed, 2 not passed' '$work/check.out'"
check "  the replays are kept where asked" test -f "$work/replays/0007-07.replay.tape"
"$python" - "$work/report.xml" > "$work/junit.out" 2>&1 <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
cases = list(root.iter("testcase"))
assert len(cases) == 50, len(cases)
assert root.get("tests") == "50" and root.get("failures") == "2" and root.get("errors") == "0"
failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
assert sorted(failed) == ["07.tape", "30.tape"], sorted(failed)
for name, failure in failed.items():
    message = failure.get("message")
    assert message.startswith("first divergence at seq "), message
    assert "outcome_stdout" in message, message
    assert failure.get("type") == "diverged", failure.get("type")
assert not any(c.find("error") is not None for c in cases)
out = [c for c in cases if c.get("name") == "07.tape"][0].find("system-out").text
assert "one more line" in out, out
print("junit ok")
PY
check "the JUnit report parses: 50 testcases, failures exactly 07 and 30, each naming its first divergence" \
  grep -q "junit ok" "$work/junit.out"
cat "$work/junit.out" | grep -v "junit ok"

"$td" check "$suite/tapes/07.tape" "$suite/tapes/08.tape" --json > "$work/check.json" 2> /dev/null
"$python" - "$work/check.json" > "$work/json.out" 2>&1 <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
assert report["tapes"] == 2 and report["passed"] == 1, report
first, second = report["cases"]
assert first["status"] == "diverged" and first["divergences"] >= 1, first
assert second["status"] == "passed" and second["replay_exit"] == 0, second
print("json ok")
PY
check "--json: one object, each case's status in the order given" grep -q "json ok" "$work/json.out"

# A suite moved as a whole (tapes, workspaces, agents) still finds everything.
mv "$suite" "$work/moved"
"$td" check "$work/moved/tapes/01.tape" "$work/moved/tapes/02.tape" -q
check "a moved suite replays: the manifest's paths are relative" test $? = 0
mkdir -p "$work/elsewhere/deeper"
"$td" fmt -q "$work/moved/tapes/01.tape" -o "$work/elsewhere/deeper/01.tape"
"$td" check -q "$work/elsewhere/deeper/01.tape"
check "a tape fmt -o writes elsewhere takes its manifest along, its paths rebased" test $? = 0

# A replay that never ends is stopped at the timeout, with everything it started.
mkdir -p "$work/hang"
cp "$work/moved/tapes/01.tape" "$work/hang/loop.tape"
printf '{"tapedeck_manifest":1,"command":["bash","-c",": td-check-hang; while :; do :; done"],"cwd":"../moved/ws/01","workspace":"../moved/ws/01"}\n' \
  > "$work/hang/loop.tape.manifest"
"$td" check "$work/hang" --timeout 1 --junit "$work/hang.xml" > "$work/hang.out" 2>&1
check "a hanging replay: exit 1, reported as timed out" \
  bash -c "[ $? = 1 ] && grep -q '^TIME .*loop.tape' '$work/hang.out'"
check "  an <error> in JUnit" grep -q '<error message="the replay ran past 1 s' "$work/hang.xml"
sleep 0.2
check "  and nothing it started is left running" bash -c "! pgrep -f 'td-check-han[g]' > /dev/null"

# Bad input: exit 2, one line naming what is wrong, nothing replayed.
expect_refused() {  # expect_refused WHAT PATTERN ARGS...
  local what=$1 pattern=$2
  shift 2
  "$td" check "$@" > "$work/bad.out" 2>&1
  local code=$?
  check "$what: exit 2, one line" \
    bash -c "[ $code = 2 ] && [ \$(wc -l < '$work/bad.out') = 1 ] && grep -q -- '$pattern' '$work/bad.out'"
}
mkdir -p "$work/empty" "$work/bare"
cp "$work/moved/tapes/01.tape" "$work/bare/bare.tape"
expect_refused "a missing path" "does not exist" "$work/nothing-here"
expect_refused "a folder without tapes" "no tapes with a manifest" "$work/empty"
expect_refused "a tape named without its manifest" "bare.tape.manifest: no manifest" "$work/bare/bare.tape"
echo '{"tapedeck_manifest":1,"command":"python3"}' > "$work/bare/bare.tape.manifest"
expect_refused "a manifest whose command is not a list" '"command" must be a list' "$work/bare/bare.tape"
echo 'not json' > "$work/bare/bare.tape.manifest"
expect_refused "a manifest that is not JSON" "not a JSON object" "$work/bare"
expect_refused "-j 0" "jobs" "$work/moved/tapes" -j 0
expect_refused "a --junit folder that does not exist" "no folder" "$work/moved/tapes/01.tape" \
  --junit "$work/no/such/report.xml"

finish "check"
