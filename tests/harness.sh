# What the end-to-end test scripts share (sourced): the Python they run programs with, a scratch
# folder removed at exit (with whatever each script adds to `on_exit`), and checks that count
# failures and a closing line that says how it went.
#   check WHAT COMMAND...   runs COMMAND; "ok: WHAT", or "FAIL: WHAT" counted
#   finish NAME             prints the result and exits 1 when a check failed
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
work=$(mktemp -d)
on_exit=()
cleanup_harness() {
  local step
  for step in "${on_exit[@]}"; do eval "$step"; done
  rm -rf "$work"
}
trap cleanup_harness EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; else fail "$what"; fi; }
finish() {
  echo
  if [ "$failures" -gt 0 ]; then echo "$failures check(s) failed"; exit 1; fi
  echo "all $1 checks passed"
}
