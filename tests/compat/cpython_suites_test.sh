#!/usr/bin/env bash
# CPython's own test modules of the world beyond a program's code: temporary files, file times,
# archives made by tools in /tmp, globbing, paths (test_shutil, test_os, test_tempfile,
# test_glob, test_pathlib), run by Debian's python3 in a workspace with the default TMPDIR.
# Recorded, then replayed: every case reports what it reported recorded (case_results.py prints
# each case's outcome), and the replay exits as the recording did.
# Usage: cpython_suites_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
if ! "$python" -c "import test.test_os" 2>/dev/null; then
  echo "skipped: $python has no test modules (scripts/install-deps.sh installs libpython3.X-testsuite)"
  exit 77
fi
unset TMPDIR
mkdir -p "$work/ws" && cd "$work/ws"
for module in test_shutil test_os test_tempfile test_glob test_pathlib; do
  "$td" run -q --emit-tape "$work/$module.tape" -- "$python" "$here/case_results.py" "test.$module" \
    > "$work/$module.rec" 2> "$work/$module.rec.err"
  recorded=$?
  "$td" replay -q "$work/$module.tape" -- "$python" "$here/case_results.py" "test.$module" \
    > "$work/$module.rep" 2> "$work/$module.rep.err"
  replayed=$?
  check "$module: recorded, every case ran ($(tail -1 "$work/$module.rec"))" \
    grep -q "^[0-9]* cases" "$work/$module.rec"
  check "$module: replayed exits as recorded ($recorded)" test "$replayed" = "$recorded"
  check "$module: every case reports what it reported recorded" \
    diff "$work/$module.rec" "$work/$module.rep"
done
finish "CPython suites"
