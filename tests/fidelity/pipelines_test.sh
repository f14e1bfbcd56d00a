#!/usr/bin/env bash
# Subprocesses that run at the same time end in either order: a bash program with two pipelines,
# two `&` jobs and `make -j2`, recorded and replayed twenty times, passes semantic fidelity every
# time (the members of each are compared as a set). A
# replay that leaves out one member of a pipeline is still reported, naming it.
# Usage: pipelines_test.sh TAPEDECK [PAIRS]
set -uo pipefail
td=$(realpath "$1")
pairs=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../harness.sh"

ws=$work/ws
mkdir -p "$ws"
printf 'pear\napple\npear\nfig\n' > "$ws/fruit.txt"
for f in a b c d; do echo "$f" > "$ws/$f.in"; done
printf 'all: a.out b.out c.out d.out\n%%.out: %%.in\n\tcp $< $@\n' > "$ws/Makefile"
program='echo files $(ls | wc -l)
sort fruit.txt | uniq -c | head -n 5
(sleep 0.05; date +%Y > /dev/null) & (cat fruit.txt > /dev/null) & wait
make -s -j2 && cat a.out d.out && rm -f ./*.out'

passed=0
for i in $(seq "$pairs"); do
  rm -rf "$work"/run.tape* "$work"/replay.tape*
  (cd "$ws" && "$td" run -q --emit-tape "$work/run.tape" -- bash -c "$program") > "$work/run.out" 2>&1 ||
    { fail "pair $i: the recording failed: $(tail -1 "$work/run.out")"; continue; }
  (cd "$ws" && "$td" replay "$work/run.tape" --emit-tape "$work/replay.tape" -- bash -c "$program") \
    > "$work/replay.out" 2>&1 || { fail "pair $i: the replay failed: $(tail -1 "$work/replay.out")"; continue; }
  if "$td" fidelity "$work/run.tape" "$work/replay.tape" --mode semantic > "$work/fidelity.out" 2>&1; then
    passed=$((passed + 1))
  else
    echo "pair $i:"; head -4 "$work/fidelity.out"
  fi
done
check "every pair passes semantic fidelity ($passed of $pairs)" test "$passed" = "$pairs"

# The replay leaves `ls` out of the first pipeline (wc reads nothing; its recorded answer is
# served all the same): fidelity names the missing member.
dropped='echo files $(wc -l < /dev/null)
sort fruit.txt | uniq -c | head -n 5
(sleep 0.05; date +%Y > /dev/null) & (cat fruit.txt > /dev/null) & wait
make -s -j2 && cat a.out d.out && rm -f ./*.out'
rm -rf "$work"/replay.tape*
(cd "$ws" && "$td" replay "$work/run.tape" --emit-tape "$work/replay.tape" -- bash -c "$dropped") \
  > /dev/null 2>&1
"$td" fidelity "$work/run.tape" "$work/replay.tape" --mode semantic --json > "$work/dropped.json" 2>&1
check "a pipeline member the replay did not run is a divergence (exit 1)" test $? = 1
check "  named by its command" "$python" -c "import json,sys
r = json.load(open(sys.argv[1]))
d = [x for x in r['divergences'] if x['category'] == 'process_set']
assert len(d) == 1 and '/ls\`' in d[0]['message'], r['divergences']" "$work/dropped.json"
finish pipelines
