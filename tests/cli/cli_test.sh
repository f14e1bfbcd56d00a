#!/usr/bin/env bash
# The CLI contract: exit codes, one-line errors, --json that parses, verify's findings,
# show's filters, fmt's CAS carrying.
# Usage: cli_test.sh TAPEDECK RECORD_HOST VECTORS_DIR
set -u
td=$1 host=$2 vectors=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
check() {  # check NAME EXPECTED_EXIT COMMAND... ; output in $work/out, $work/err
  local name=$1 want=$2
  shift 2
  "$@" >"$work/out" 2>"$work/err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $name: exit $got, expected $want; stderr: $(head -c 300 "$work/err")"
    failures=$((failures + 1))
    return 1
  fi
  return 0
}
expect() {  # expect NAME CONDITION-COMMAND...
  local name=$1
  shift
  if ! "$@"; then
    echo "FAIL: $name"
    failures=$((failures + 1))
  fi
}
json_ok() { python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1"; }
one_line() { [ "$(wc -l <"$1")" -eq 1 ]; }

# A tape from the example host: every kind, both phases, one CAS payload.
check "record_host" 0 "$host" "$work/ex.tape"

# --help teaches and exits 0; bad flags and missing files are usage errors (2), in one line.
check "help" 0 "$td" --help && expect "help lists commands" grep -q "verify" "$work/out"
check "fmt --help" 0 "$td" fmt --help && expect "fmt help has an example" grep -q "Example" "$work/out"
check "version" 0 "$td" --version && expect "version printed" grep -q "tapedeck" "$work/out"
check "no command" 2 "$td"
check "unknown flag" 2 "$td" stats --bogus "$work/ex.tape" && expect "unknown flag: one line" one_line "$work/err"
check "missing file" 2 "$td" verify "$work/nope.tape" && expect "missing file named" grep -q "nope.tape" "$work/err"
check "bad phase" 2 "$td" show "$work/ex.tape" --phase teardown && expect "bad phase: one line" one_line "$work/err"
check "a directory" 2 "$td" stats "$work"
check "run --llm-upstream without --emit-tape" 2 "$td" run --llm-upstream http://127.0.0.1:9 -- true &&
  expect "llm-upstream without a tape: one line naming the flag" \
    bash -c "grep -q -- '--llm-upstream' '$work/err' && [ \$(wc -l < '$work/err') -eq 1 ]"

# stats
check "stats" 0 "$td" stats "$work/ex.tape" && expect "stats counts records" grep -q "records       17" "$work/out"
check "stats --json" 0 "$td" stats --json "$work/ex.tape" && expect "stats json parses" json_ok "$work/out"
expect "stats json counts" python3 -c '
import json,sys; s=json.load(open(sys.argv[1]))
assert s["records"]==17, s; assert s["by_kind"]["llm_call"]==3; assert s["by_phase"]["runtime_finalize"]==2
assert s["payloads"]["cas_entries"]==1 and s["payloads"]["cas_entry_bytes"]==6000
assert s["virtual_time_ms"]["span"]==4500 and s["sleep_ms"]==4500' "$work/out"
check "stats of an empty tape" 0 "$td" stats --json "$vectors/canonical/empty.tape" &&
  expect "empty tape has no time span" grep -q '"virtual_time_ms":null' "$work/out"

# show and its filters
check "show" 0 "$td" show "$work/ex.tape" && expect "show lists 17" [ "$(wc -l <"$work/out")" -eq 17 ]
check "show --kind" 0 "$td" show "$work/ex.tape" --kind llm_call && expect "3 llm calls" [ "$(wc -l <"$work/out")" -eq 3 ]
check "show --phase --json" 0 "$td" show "$work/ex.tape" --phase runtime_finalize --json
expect "show json is tape lines" python3 -c '
import json,sys
lines=[json.loads(l) for l in open(sys.argv[1])]
assert len(lines)==2 and all(l["phase"]=="runtime_finalize" and l["type"]=="record" for l in lines)' "$work/out"
check "show unknown kind" 0 "$td" show "$vectors/lenient/unknown_kind.tape" --kind brand_new_kind &&
  expect "unknown kind shown" grep -q brand_new_kind "$work/out"

# verify: clean, then every kind of damage, all reported at once
check "verify clean" 0 "$td" verify "$work/ex.tape"
check "verify --json clean" 0 "$td" verify --json "$work/ex.tape" && expect "verify json parses" json_ok "$work/out"
mkdir "$work/bad" && cp -r "$work/ex.tape" "$work/ex.tape.cas" "$work/bad/"
entry=$(ls "$work/bad/ex.tape.cas")
printf 'tampered' >"$work/bad/ex.tape.cas/$entry"
check "verify corrupt" 1 "$td" verify --json "$work/bad/ex.tape"
expect "corrupt entry reported" grep -q cas_hash_mismatch "$work/out"
rm "$work/bad/ex.tape.cas/$entry"
check "verify missing" 1 "$td" verify "$work/bad/ex.tape" && expect "missing entry reported" grep -q cas_missing "$work/out"
check "verify invalid name" 1 "$td" verify --json "$vectors/lenient/cas_missing_entry.tape"
expect "invalid name reported" grep -q cas_invalid_name "$work/out"
check "verify inline hash" 1 "$td" verify "$vectors/lenient/payload_both_fields.tape" &&
  expect "inline hash reported" grep -q inline_hash_mismatch "$work/out"
check "verify canonical vectors" 0 "$td" verify "$vectors/canonical/payload_paths.tape"
check "verify unreadable" 2 "$td" verify "$vectors/errors/truncated_record.tape" && expect "unreadable: one line" one_line "$work/err"

# fidelity: identical, one changed prompt, missing records, bad mode
check "fidelity same" 0 "$td" fidelity "$work/ex.tape" "$work/ex.tape" --mode byte-identical
expect "fidelity same says so" grep -q "no divergence" "$work/out"
digest=$(grep -o '"request_digest":"[0-9a-f]*"' "$work/ex.tape" | sed -n 2p | cut -d'"' -f4)
sed "s/$digest/$(printf '%064d' 0)/" "$work/ex.tape" >"$work/prompt.tape"
check "fidelity changed prompt" 1 "$td" fidelity "$work/ex.tape" "$work/prompt.tape" --mode byte-identical --json
expect "one llm_request_digest divergence at seq 6" python3 -c '
import json,sys; r=json.load(open(sys.argv[1]))
d=r["divergences"]; assert len(d)==1 and d[0]["category"]=="llm_request_digest" and d[0]["seq"]==6, d
assert r["recorded_records"]==17 and abs(r["score"]-16/17)<1e-6, r' "$work/out"
check "fidelity human" 1 "$td" fidelity "$work/ex.tape" "$work/prompt.tape"
expect "side by side with carets" grep -q '\^\^\^' "$work/out"
head -5 "$work/ex.tape" >"$work/short.tape"
check "fidelity missing" 1 "$td" fidelity "$work/ex.tape" "$work/short.tape" && expect "missing_in_replay" grep -q missing_in_replay "$work/out"
check "fidelity outcome" 1 "$td" fidelity "$work/ex.tape" "$work/short.tape" --mode outcome && expect "outcome facets" grep -q outcome_files "$work/out"
check "fidelity bad mode" 2 "$td" fidelity "$work/ex.tape" "$work/ex.tape" --mode fuzzy && expect "bad mode: one line" one_line "$work/err"
check "fidelity unreadable" 2 "$td" fidelity "$work/ex.tape" "$vectors/errors/not_json.tape" && expect "names the bad tape" grep -q "not_json.tape:1" "$work/err"

# a torn last line (a recording stopped mid-write): reported, worked around, repaired
head -c -30 "$work/ex.tape" >"$work/torn.tape" && cp -r "$work/ex.tape.cas" "$work/torn.tape.cas"
check "verify torn" 1 "$td" verify --json "$work/torn.tape" && expect "torn tail reported" grep -q '"category":"torn_tail"' "$work/out"
check "stats torn" 0 "$td" stats "$work/torn.tape" && expect "torn warned" grep -q "torn last line" "$work/err"
check "fmt torn" 0 "$td" fmt -q "$work/torn.tape" -o "$work/untorn.tape" && expect "fmt warns of torn" grep -q "torn" "$work/err"
check "verify --repair" 0 "$td" verify --repair "$work/torn.tape" && expect "repair said" grep -q "repaired" "$work/out"
expect "repair keeps every whole record" cmp -s "$work/torn.tape" "$work/untorn.tape"
check "verify after repair" 0 "$td" verify "$work/torn.tape"

# fmt: in place keeps bytes; elsewhere hard-links CAS entries; garbage leaves nothing behind
cp "$work/ex.tape" "$work/copy.tape" && cp -r "$work/ex.tape.cas" "$work/copy.tape.cas"
check "fmt in place" 0 "$td" fmt -q "$work/copy.tape" -o "$work/copy.tape" && expect "in place unchanged" cmp -s "$work/ex.tape" "$work/copy.tape"
check "fmt elsewhere" 0 "$td" fmt "$work/ex.tape" -o "$work/moved/moved.tape"
expect "fmt reports links" grep -q "1 linked" "$work/err"
expect "CAS entry hard-linked" [ "$(stat -c %i "$work/ex.tape.cas/$(ls "$work/ex.tape.cas")")" = "$(stat -c %i "$work/moved/moved.tape.cas/$(ls "$work/ex.tape.cas")")" ]
check "fmt missing CAS warns" 0 "$td" fmt "$work/bad/ex.tape" -o "$work/bad/out.tape" && expect "missing CAS warning" grep -q "missing" "$work/err"
printf 'garbage\n' >"$work/garbage.tape"
check "fmt garbage" 2 "$td" fmt "$work/garbage.tape" -o "$work/never.tape" && expect "garbage leaves nothing" [ ! -e "$work/never.tape" ]

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "cli: all checks passed"
