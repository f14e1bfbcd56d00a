#!/usr/bin/env bash
# One ground-truth vector through `tapedeck fmt`:
#   canonical: the same bytes back, CAS sidecar included (entries and their bytes);
#   lenient:   formats to NAME.expected.tape;
#   errors:    refused with exit 2 and one line naming the file and its line.
# Usage: vector_test.sh canonical|lenient|errors TAPEDECK VECTOR
set -u
mode=$1 tapedeck=$2 vector=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $vector: $*" >&2; exit 1; }

case $mode in
  canonical)
    "$tapedeck" fmt -q "$vector" -o "$work/out.tape" || fail "fmt exited $?"
    cmp "$vector" "$work/out.tape" || fail "fmt changed the bytes"
    if [ -d "$vector.cas" ]; then
      diff -r "$vector.cas" "$work/out.tape.cas" || fail "CAS sidecar not carried byte for byte"
    else
      [ ! -e "$work/out.tape.cas" ] || fail "fmt made a CAS sidecar the input does not have"
    fi
    # stdout mode gives the same bytes
    "$tapedeck" fmt "$vector" | cmp - "$vector" || fail "fmt to stdout differs"
    ;;
  lenient)
    expected=${vector%.tape}.expected.tape
    "$tapedeck" fmt -q "$vector" -o "$work/out.tape" 2>"$work/err" || fail "fmt exited $?"
    cmp "$expected" "$work/out.tape" || fail "output differs from $(basename "$expected")"
    # and the canonical form is a fixed point
    "$tapedeck" fmt "$work/out.tape" | cmp - "$expected" || fail "not a fixed point"
    ;;
  errors)
    "$tapedeck" fmt "$vector" -o "$work/out.tape" 2>"$work/err" >/dev/null
    code=$?
    [ "$code" -eq 2 ] || fail "exit $code, expected 2"
    [ "$(wc -l <"$work/err")" -eq 1 ] || fail "error is not one line: $(cat "$work/err")"
    grep -Eq "^tapedeck: error: $(printf '%s' "$vector" | sed 's/[.[\*^$/]/\\&/g'):[0-9]+: " "$work/err" ||
      fail "error does not name file:line: $(cat "$work/err")"
    [ ! -e "$work/out.tape" ] || fail "a refused tape left an output file"
    [ -z "$(ls -A "$work" | grep -v '^err$')" ] || fail "temporary files left behind: $(ls -A "$work")"
    ;;
  *) echo "usage: vector_test.sh canonical|lenient|errors TAPEDECK VECTOR" >&2; exit 2 ;;
esac
echo "ok: $mode $(basename "$vector")"
