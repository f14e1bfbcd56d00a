#!/usr/bin/env bash
# One ground-truth vector through `tapedeck fmt`:
#   canonical: the same bytes back, CAS sidecar included (entries and their bytes);
#   lenient:   formats to NAME.expected.tape;
#   errors:    refused with exit 2 and one line naming the file and its line.
# Each also compressed, by the zstd tool and by `fmt -o NAME.tape.zst`: the compressed form reads
# as the plain one (the same canonical bytes, or the same refusal).
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

# Compressed by the reference tool (frames tapedeck did not write), then by tapedeck itself.
mkdir "$work/z"
zstd -q -c "$vector" > "$work/z/tool.tape.zst" || fail "zstd could not compress it"
case $mode in
  canonical | lenient)
    [ "$mode" = canonical ] && want=$vector || want=${vector%.tape}.expected.tape
    "$tapedeck" fmt "$work/z/tool.tape.zst" 2>/dev/null | cmp - "$want" ||
      fail "its zstd-compressed form does not format to the canonical bytes"
    "$tapedeck" fmt -q "$vector" -o "$work/z/own.tape.zst" || fail "fmt -o .zst exited $?"
    [ "$(head -c4 "$work/z/own.tape.zst" | od -An -tx1 | tr -d ' ')" = 28b52ffd ] ||
      fail "fmt -o NAME.tape.zst did not write a zstd frame"
    zstd -q -dc "$work/z/own.tape.zst" | cmp - "$want" || fail "fmt's compressed tape is not the canonical bytes"
    "$tapedeck" fmt "$work/z/own.tape.zst" 2>/dev/null | cmp - "$want" || fail "fmt's compressed tape does not read back"
    ;;
  errors)
    "$tapedeck" fmt "$work/z/tool.tape.zst" -o "$work/z/out.tape" 2>"$work/err" >/dev/null
    code=$?
    [ "$code" -eq 2 ] || fail "compressed: exit $code, expected 2"
    [ "$(wc -l <"$work/err")" -eq 1 ] || fail "compressed: error is not one line: $(cat "$work/err")"
    grep -q "tool.tape.zst:[0-9]*: " "$work/err" || fail "compressed: error does not name file:line: $(cat "$work/err")"
    ;;
esac
echo "ok: $mode $(basename "$vector")"
