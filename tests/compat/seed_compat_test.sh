#!/usr/bin/env bash
# Both directions against the seed itself (shared/anchors/seed-rust, built offline from Debian's
# Rust crates):
#   seed -> tapedeck: tapes from `seedbench gen` (both mixes, three workload sizes, one and two
#     threads) come back byte-identical through `tapedeck fmt`, CAS sidecar included.
#   tapedeck -> seed: tapes tapedeck writes (tape_gen's workloads, the example host, fmt output)
#     load in `seedbench load`, which resolves every payload; with one thread tape_gen's tapes
#     are byte-identical to the seed's own.
# seedbench gen takes no seed argument (its generator is seeded 42 + thread), so the three
# variations are three workload sizes; with two threads the interleaving differs run to run.
# Usage: seed_compat_test.sh TAPEDECK TAPE_GEN RECORD_HOST ANCHOR_BUILD_SH
set -u
td=$1 gen=$2 host=$3 build_sh=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -f "$build_sh" ]; then
  echo "skipped: the seed anchor ($build_sh) is not beside this checkout (shared/ is CI's)"
  exit 77
fi
anchor_dir=${TAPEDECK_SEED_BUILD_DIR:-$PWD/seed-rust}
echo "building the seed anchor in $anchor_dir ..."
seedbench=$(sh "$build_sh" "$anchor_dir" | tail -n 1)
if [ ! -x "$seedbench" ]; then
  echo "FAIL: the seed anchor did not build (run scripts/install-deps.sh)"
  exit 1
fi
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

for mix in full small; do
  for threads in 1 2; do
    for n in 1000 4000 12000; do
      name="$mix-$threads-$n"
      extra=""
      [ "$mix" = small ] && extra=small
      "$seedbench" gen "$n" "$threads" "$work/$name.seed.tape" $extra 2>/dev/null || { fail "seedbench gen $name"; continue; }
      # seed -> tapedeck
      "$td" fmt -q "$work/$name.seed.tape" -o "$work/$name.fmt.tape" || { fail "fmt $name"; continue; }
      cmp -s "$work/$name.seed.tape" "$work/$name.fmt.tape" || fail "fmt changed the seed's bytes: $name"
      if [ -d "$work/$name.seed.tape.cas" ]; then
        diff -r -q "$work/$name.seed.tape.cas" "$work/$name.fmt.tape.cas" >/dev/null || fail "CAS differs: $name"
      fi
      "$td" verify "$work/$name.seed.tape" >/dev/null || fail "verify refused the seed's tape: $name"
      # tapedeck -> seed
      "$gen" "$n" "$threads" "$work/$name.ours.tape" $extra 2>/dev/null || { fail "tape_gen $name"; continue; }
      "$seedbench" load "$work/$name.ours.tape" 2>"$work/load.err" || fail "seedbench load refused tape_gen's $name: $(cat "$work/load.err")"
      grep -q "records $((n * threads)) " "$work/load.err" || fail "seedbench load counted wrong for $name: $(cat "$work/load.err")"
      if [ "$threads" = 1 ]; then
        cmp -s "$work/$name.seed.tape" "$work/$name.ours.tape" || fail "tape_gen differs from seedbench gen: $name"
      fi
      "$seedbench" load "$work/$name.fmt.tape" 2>/dev/null || fail "seedbench load refused fmt output $name"
      echo "ok: $name"
    done
  done
done

"$host" "$work/host.tape" >/dev/null || fail "record_host"
"$seedbench" load "$work/host.tape" 2>/dev/null || fail "seedbench load refused the example host's tape"
# And the seed re-encodes what tapedeck wrote to the same bytes.
"$seedbench" roundtrip "$work/host.tape" "$work/host.seed.tape" || fail "seedbench roundtrip"
cmp -s "$work/host.tape" "$work/host.seed.tape" || fail "the seed re-encodes the host's tape differently"

if [ "$failures" -ne 0 ]; then
  echo "$failures compatibility check(s) failed"
  exit 1
fi
echo "seed compatibility: all checks passed"
