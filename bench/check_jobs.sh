#!/usr/bin/env bash
# `tapedeck check` in parallel: a suite of 50 tapes recorded from the example agents (Python and
# bash, alternately; tests/suite/make_suite.sh), checked with -j 1 and with -j 2 in alternating
# rounds. Prints the medians and the ratio -j 2 / -j 1 (target: under 0.70). Each replay is its
# own process, so on a machine with two cores or more the suite should take little more than
# half as long.
#
# Usage: bench/check_jobs.sh [--rounds N] [--dir DIR] (default 5 rounds; DIR holds the suite).
# Expects a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
td=$PWD/build/release/tapedeck
[ -x "$td" ] || { echo "bench/check_jobs.sh: build first (scripts/build.sh release)" >&2; exit 2; }
scratch_dir check $((256 * 1024))
echo "(suite in $dir; $(nproc) cores)"

bash tests/suite/make_suite.sh "$td" examples "$dir/suite" 50 >/dev/null
rm -f "$dir"/j{1,2}.samples
for ((round = 0; round < rounds; round++)); do
  seconds "$td" check -q -j 1 "$dir/suite/tapes" >>"$dir/j1.samples"
  seconds "$td" check -q -j 2 "$dir/suite/tapes" >>"$dir/j2.samples"
done
one=$(median <"$dir/j1.samples")
two=$(median <"$dir/j2.samples")
share=$(ratio "$two" "$one")
printf 'check of 50 tapes: -j 1 %ss, -j 2 %ss (medians of %s): -j 2 / -j 1 = %s, %s under 0.70\n' \
  "$one" "$two" "$rounds" "$share" "$(awk -v s="$share" 'BEGIN {print (s < 0.70) ? "meets" : "MISSES"}')"
