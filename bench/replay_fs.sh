#!/usr/bin/env bash
# Replay's file system, as ratios measured side by side in one run (medians of N rounds):
#
#   1. A Python program making 1,000 temporary files with tempfile.mkstemp (O_CREAT|O_EXCL,
#      written, closed): natively, recorded, and replayed in each view of the workspace
#      (--isolation namespace: a kernel overlay in a mount namespace; copy: a copy the preload
#      redirects to). Target: the replay under 2 s.
#   2. What the private view costs at start: the kernel overlay's set-up as the replay measures
#      it (fork, namespaces, mount, hand-over; its --json isolation_setup_ms; target <= 5 ms),
#      and the wall time of replaying `true` in each view against `tapedeck run true`.
#
# Usage: bench/replay_fs.sh [--rounds N] [--dir DIR] (default 5 rounds, DIR on tmpfs when there
# is room). The replay's scratch folder (TMPDIR) is put in DIR too, so that the native run and
# the replay write to the same file system: on this VM's disk a new file costs up to a
# millisecond, which would be measured instead. Expects a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
td=$PWD/build/release/tapedeck
program=$PWD/bench/programs/mkstemp_1000.py
python=/usr/bin/python3
[ -x "$td" ] || { echo "bench/replay_fs.sh: build first (scripts/build.sh release)" >&2; exit 2; }
scratch_dir replay-fs $((256 * 1024))
echo "(workspaces, tapes and the replay's scratch in $dir)"
export TMPDIR=$dir

seconds() {  # seconds CMD...: wall time of one run in a fresh workspace, output discarded
  local start stop
  rm -rf "$dir/ws" && mkdir "$dir/ws"
  start=$(date +%s%N)
  (cd "$dir/ws" && "$@") >/dev/null 2>"$dir/cmd.err" ||
    { echo "bench: failed: $* ($(head -c 300 "$dir/cmd.err"))" >&2; exit 1; }
  stop=$(date +%s%N)
  awk -v ns=$((stop - start)) 'BEGIN {printf "%.4f\n", ns / 1e9}'
}

echo "== tempfile.mkstemp 1,000 times (medians of $rounds)"
rm -f "$dir"/*.samples
for ((round = 0; round < rounds; round++)); do
  seconds "$python" "$program" >>"$dir/native.samples"
  seconds "$td" run -q --overwrite --emit-tape "$dir/mkstemp.tape" -- "$python" "$program" >>"$dir/record.samples"
  for view in namespace copy; do
    seconds "$td" replay -q --isolation "$view" "$dir/mkstemp.tape" -- "$python" "$program" >>"$dir/$view.samples"
  done
done
native=$(median <"$dir/native.samples")
record=$(median <"$dir/record.samples")
printf '%-34s %7ss\n' "native" "$native"
printf '%-34s %7ss (%sx native)\n' "recorded" "$record" "$(ratio "$record" "$native")"
for view in namespace copy; do
  replay=$(median <"$dir/$view.samples")
  printf '%-34s %7ss (%sx native): %s under 2 s\n' "replayed, --isolation $view" "$replay" \
    "$(ratio "$replay" "$native")" "$(awk -v s="$replay" 'BEGIN {print (s < 2) ? "meets" : "MISSES"}')"
done

echo
echo "== the view's start-up cost (medians of $rounds)"
rm -f "$dir"/*.samples
seconds "$td" run -q --overwrite --emit-tape "$dir/true.tape" -- true >/dev/null
for ((round = 0; round < rounds; round++)); do
  seconds "$td" run -q -- true >>"$dir/run.samples"
  for view in namespace copy; do
    seconds "$td" replay -q --isolation "$view" "$dir/true.tape" -- true >>"$dir/$view.samples"
  done
  rm -rf "$dir/ws" && mkdir "$dir/ws"
  (cd "$dir/ws" && "$td" replay --json --isolation namespace "$dir/true.tape" -- true 2>&1 >/dev/null) |
    sed -n 's/.*"isolation_setup_ms":\([0-9.]*\).*/\1/p' >>"$dir/setup.samples"
done
setup=$(median <"$dir/setup.samples")
printf 'kernel overlay set-up: %s ms: %s the 5 ms target\n' "$setup" \
  "$(awk -v s="$setup" 'BEGIN {print (s <= 5) ? "meets" : "MISSES"}')"
run=$(median <"$dir/run.samples")
for view in namespace copy; do
  replay=$(median <"$dir/$view.samples")
  printf 'replay of `true`, --isolation %-9s %7ss (%sx `tapedeck run true`, %s s)\n' "$view" \
    "$replay" "$(ratio "$replay" "$run")" "$run"
done
