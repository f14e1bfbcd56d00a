#!/usr/bin/env bash
# tapedeck against the seed anchor, side by side in one run, reported as ratios.
#
#   1. `tapedeck fmt` vs `seedbench roundtrip` on the seed's own tapes:
#      `seedbench gen 1000000 1 X small` (target: >= 8x faster) and `seedbench gen 100000 1 X`
#      (target: >= 6x faster), peak memory no higher than the seed's. Medians of alternating runs,
#      on disk (/var/tmp) and in DIR (tmpfs by default).
#   2. The reader in linear time: a 200 MB single line against a 20 MB one, 1,000,000 blank
#      lines against 10,000,000 (a ratio near 10 is linear; quadratic would be 100).
#      The credential scan over the mixed tape's lines and sidecar (target: <= 10% of fmt's time).
#   3. The recorder (Google Benchmark): records/s on one thread (target: >= 10 M/s), two
#      threads against one (target: >= 1.5x), and streaming to a tape against recording into
#      memory (target: costs <= 10% of throughput).
#   4. The fidelity oracle on two 1,000,000-record tapes against loading both (tapedeck stats on
#      each): target less than 2x.
#   5. Replaying a run that slept 10 s of virtual time (target: well under 1 s of wall time).
#   6. The interposer (bench/interposer.sh): `tapedeck replay` of a program that slept 5 s
#      (target: under 5% of the recording's wall time), and the overhead of `tapedeck run`, taped
#      and not, on 1,000,000 clock reads and on 10,000 small file reads.
#   7. Replay's private view (bench/replay_fs.sh): 1,000 tempfile.mkstemp replayed (target: under
#      2 s) and the kernel overlay's set-up (target: <= 5 ms).
#   8. Taped randomness (bench/entropy.sh): 100 MB from /dev/urandom and 1,000,000 getrandom calls,
#      against the program alone, and the tape's size (it must not grow with the bytes drawn).
#
# Usage: bench/run.sh [--rounds N] [--dir DIR]
#   DIR holds the generated tapes (about 1 GB); default a fresh folder in /dev/shm (tmpfs) when it
#   has room, else under /tmp, removed after. tmpfs keeps the comparison about the two programs:
#   on this VM's disk, writing a fresh 180 MB file costs anywhere from 0.05 s to 0.4 s from one run
#   to the next, for both. Pass --dir /tmp/somewhere to measure on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
parse_bench_args "$@"
scratch_dir bench $((3 * 1024 * 1024))

scripts/install-deps.sh
scripts/build.sh release >/dev/null
td=build/release/tapedeck
seedbench=$(sh ../shared/anchors/seed-rust/build.sh "$dir/seed-build" | tail -n 1)

# run_measured SAMPLES CMD... -> appends "seconds max_rss_kb" to SAMPLES. The seconds are taken
# to the microsecond around the command (time(1)'s %e rounds to 10 ms, 5% of a 0.2 s run).
run_measured() {
  local samples=$1 start end
  shift
  start=$EPOCHREALTIME
  /usr/bin/time -f "%M" -o "$dir/time.out" "$@" >/dev/null 2>"$dir/cmd.err" || {
    echo "bench: command failed: $* ($(head -c 300 "$dir/cmd.err"))" >&2
    exit 1
  }
  end=$EPOCHREALTIME
  echo "$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.4f", b - a}') $(cat "$dir/time.out")" \
    >>"$samples"
}
verdict() { awk -v got="$1" -v want="$2" -v dir="$3" 'BEGIN {
  ok = (dir == "min") ? (got >= want) : (got <= want); print ok ? "meets" : "MISSES" }'; }

# compare_fmt WHERE LABEL: fmt against the seed's roundtrip on the two tapes, alternating rounds,
# with the input and the outputs in folder WHERE. Sets ours_s to fmt's median on the mixed tape.
compare_fmt() {
  local where=$1 label=$2 mix seed_s seed_kb ours_kb speedup memratio want
  echo "== fmt vs seed roundtrip on $label ($rounds alternating rounds, medians; tapes in $where)"
  "$seedbench" gen 1000000 1 "$where/small.tape" small 2>/dev/null
  "$seedbench" gen 100000 1 "$where/mix.tape" 2>/dev/null
  printf '%-6s %12s %12s %9s %12s %12s %9s\n' mix seed_s ours_s speedup seed_MiB ours_MiB mem_ratio
  for mix in small mix; do
    rm -f "$dir/$mix".{seed,ours}.samples
    for ((round = 0; round < rounds; round++)); do
      rm -rf "$where"/out.seed.tape* "$where"/out.ours.tape*
      run_measured "$dir/$mix.seed.samples" "$seedbench" roundtrip "$where/$mix.tape" \
        "$where/out.seed.tape"
      run_measured "$dir/$mix.ours.samples" "$td" fmt -q "$where/$mix.tape" -o "$where/out.ours.tape"
    done
    cmp -s "$where/$mix.tape" "$where/out.ours.tape" ||
      { echo "bench: fmt output differs from input" >&2; exit 1; }
    seed_s=$(cut -d' ' -f1 "$dir/$mix.seed.samples" | median)
    ours_s=$(cut -d' ' -f1 "$dir/$mix.ours.samples" | median)
    seed_kb=$(cut -d' ' -f2 "$dir/$mix.seed.samples" | median)
    ours_kb=$(cut -d' ' -f2 "$dir/$mix.ours.samples" | median)
    speedup=$(ratio "$seed_s" "$ours_s")
    memratio=$(ratio "$ours_kb" "$seed_kb")
    want=6
    [ "$mix" = small ] && want=8
    printf '%-6s %12s %12s %8sx %12d %12d %9s   speed %s %sx, memory %s\n' "$mix" "$seed_s" \
      "$ours_s" "$speedup" $((${seed_kb%.*} / 1024)) $((${ours_kb%.*} / 1024)) "$memratio" \
      "$(verdict "$speedup" "$want" min)" "$want" "$(verdict "$memratio" 1 max)"
  done
  rm -rf "$where"/out.*
}

# On disk too: writing a fresh 180 MB file there costs 0.05 s to 0.4 s from one run to the next,
# for both programs, so these ratios are noisier than tmpfs's.
disk_dir=$(mktemp -d /var/tmp/tapedeck-bench-disk-XXXXXX)
compare_fmt "$disk_dir" disk
rm -rf "$disk_dir"
echo
compare_fmt "$dir" "$(df --output=fstype "$dir" 2>/dev/null | tail -n 1 || echo "its folder")"

# The credential scan on the mixed tape ($ours_s is fmt's median there): the scan alone over every
# line and sidecar entry, in memory (what the recorder's scan of every payload adds up to), and
# `tapedeck scan`, which also reads and decodes them. fmt re-encodes only the lines (it hard-links
# the sidecar), so the lines alone are reported too.
scan_out=$(build/release/bench/scan_bench "$dir/mix.tape" "$rounds")
scan_s=$(echo "$scan_out" | awk '{print $2}')
scan_mb=$(echo "$scan_out" | awk '{printf "%d", $4 / 1e6}')
mkdir -p "$dir/lines" && cp "$dir/mix.tape" "$dir/lines/mix.tape"
lines_s=$(build/release/bench/scan_bench "$dir/lines/mix.tape" "$rounds" | awk '{print $2}')
rm -rf "$dir/lines" "$dir"/scan.samples
for ((round = 0; round < rounds; round++)); do
  run_measured "$dir/scan.samples" "$td" scan "$dir/mix.tape"
done
command_s=$(cut -d' ' -f1 "$dir/scan.samples" | median)
share=$(ratio "$scan_s" "$ours_s")
printf 'credential scan: %s MB (lines + sidecar) in %ss = %s of fmt (%ss), %s <= 0.10;' \
  "$scan_mb" "$scan_s" "$share" "$ours_s" "$(verdict "$share" 0.10 max)"
printf ' the lines alone %ss = %s of fmt; tapedeck scan %ss\n' "$lines_s" \
  "$(ratio "$lines_s" "$ours_s")" "$command_s"
rm -rf "$dir"/small.tape* "$dir"/mix.tape* "$dir"/out.*

echo
echo "== the reader in linear time (tapedeck verify, medians of $rounds)"
header='{"type":"header","version":1,"harn_version":"bench","started_at_unix_ms":null,"script_path":null,"argv":[]}'
long_line() {  # long_line BYTES OUT: one record whose inline text is BYTES long
  { echo "$header"
    printf '{"type":"record","seq":0,"phase":"user_script","virtual_time_ms":0,"monotonic_ms":0,"kind":{"kind":"llm_call","request_digest":"d","response":{"content_hash":"h","text":"'
    head -c "$1" /dev/zero | tr '\0' 'a'
    printf '"}}}\n'; } >"$2"
}
blank_lines() {  # blank_lines COUNT OUT
  { echo "$header"; head -c "$1" /dev/zero | tr '\0' '\n'; } >"$2"
}
time_verify() {  # median seconds of `tapedeck verify FILE` (exit 1 is fine: fake hashes)
  local file=$1 samples=$dir/verify.samples start stop
  rm -f "$samples"
  for ((round = 0; round < rounds; round++)); do
    start=$(date +%s%N)
    "$td" verify "$file" >/dev/null 2>&1 || true
    stop=$(date +%s%N)
    awk -v ns=$((stop - start)) 'BEGIN {printf "%.4f\n", ns / 1e9}' >>"$samples"
  done
  median <"$samples"
}
long_line 20000000 "$dir/line20.tape"
long_line 200000000 "$dir/line200.tape"
t20=$(time_verify "$dir/line20.tape")
t200=$(time_verify "$dir/line200.tape")
rm -f "$dir"/line*.tape
blank_lines 1000000 "$dir/blank1m.tape"
blank_lines 10000000 "$dir/blank10m.tape"
b1m=$(time_verify "$dir/blank1m.tape")
b10m=$(time_verify "$dir/blank10m.tape")
rm -f "$dir"/blank*.tape
printf 'single line  20 MB %6ss  200 MB %6ss  ratio %s (10 = linear)\n' "$t20" "$t200" "$(ratio "$t200" "$t20")"
printf 'blank lines  1 M   %6ss  10 M   %6ss  ratio %s (10 = linear)\n' "$b1m" "$b10m" "$(ratio "$b10m" "$b1m")"

echo
echo "== fidelity on two 1,000,000-record tapes (medians of $rounds)"
build/release/bench/tape_gen 1000000 1 "$dir/fa.tape" small 2>/dev/null
# The replay differs in one record: the oracle must still read every line of both.
sed '500000s/"duration_ms":[0-9]*/"duration_ms":424242/' "$dir/fa.tape" >"$dir/fb.tape"
time_median() {  # time_median CMD...: median seconds over the rounds (exit codes ignored)
  local samples=$dir/cmd.samples start stop
  rm -f "$samples"
  for ((round = 0; round < rounds; round++)); do
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1 || true
    stop=$(date +%s%N)
    awk -v ns=$((stop - start)) 'BEGIN {printf "%.4f\n", ns / 1e9}' >>"$samples"
  done
  median <"$samples"
}
load_a=$(time_median "$td" stats "$dir/fa.tape")
load_b=$(time_median "$td" stats "$dir/fb.tape")
oracle=$(time_median "$td" fidelity "$dir/fa.tape" "$dir/fb.tape" --mode byte-identical)
both=$(awk -v a="$load_a" -v b="$load_b" 'BEGIN {print a + b}')
fid_ratio=$(ratio "$oracle" "$both")
printf 'loading both %ss, fidelity %ss: %sx, %s < 2x\n' "$both" "$oracle" "$fid_ratio" \
  "$(verdict "$fid_ratio" 2 max)"
rm -f "$dir"/fa.tape "$dir"/fb.tape

echo
echo "== replaying 10 s of virtual sleep (Google Benchmark)"
build/release/bench/testbench_bench --benchmark_format=json >"$dir/sleep.json" 2>/dev/null
python3 - "$dir/sleep.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["benchmarks"][0]
ms = run["real_time"] if run["time_unit"] == "ms" else run["real_time"] / 1e6
print(f"a replay of 10 s of sleeps takes {ms:.2f} ms of wall time: {10000 / ms:,.0f}x faster than "
      f"real time, {'meets' if ms < 1000 else 'MISSES'} well under 1 s")
PY

echo
echo "== recorder throughput into memory (Google Benchmark, medians of 7 repetitions)"
TMPDIR=$dir build/release/bench/recorder_bench \
  --benchmark_filter='BM_RecordSmall|BM_RecordMemory|BM_RecordStreaming|BM_ScanSmall' \
  --benchmark_format=json >"$dir/recorder.json" 2>/dev/null
python3 - "$dir/recorder.json" <<'PY'
import json, sys
runs = {b["name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
one = next(v for k, v in runs.items() if k.endswith("threads:1_median"))["items_per_second"]
scanned = next(v for k, v in runs.items() if k.startswith("BM_RecordSmallScanned"))["items_per_second"]
scan_ns = next(v for k, v in runs.items() if k.startswith("BM_ScanSmall"))["real_time"]
two = next(v for k, v in runs.items() if k.endswith("threads:2_median"))["items_per_second"]
print(f"one thread   {one / 1e6:6.1f} M records/s   {'meets' if one >= 10e6 else 'MISSES'} 10 M/s")
print(f"two threads  {two / 1e6:6.1f} M records/s   {two / one:.2f}x one thread, {'meets' if two >= 1.5 * one else 'MISSES'} 1.5x")
print(f"small texts  {scanned / 1e6:6.1f} M records/s   each payload scanned; the scan alone "
      f"{scan_ns:.0f} ns of {1e9 / scanned:.0f} ns a record ({1e3 / scan_ns:.0f} M scans/s, "
      f"{'meets' if scan_ns <= 100 else 'MISSES'} 10 M/s)")
memory = next(v for k, v in runs.items() if k.startswith("BM_RecordMemory"))["items_per_second"]
streaming = next(v for k, v in runs.items() if k.startswith("BM_RecordStreaming"))["items_per_second"]
cost = 1 - streaming / memory
print(f"streaming    {streaming / 1e6:6.1f} M records/s   against {memory / 1e6:.1f} M/s into memory: "
      f"costs {100 * cost:.1f}%, {'meets' if cost <= 0.10 else 'MISSES'} <= 10%")
PY

echo
bench/interposer.sh --rounds "$rounds" --dir "$dir/interposer"
echo
bench/replay_fs.sh --rounds "$rounds" --dir "$dir/replay_fs"
echo
bench/entropy.sh --rounds "$rounds" --dir "$dir/entropy"
