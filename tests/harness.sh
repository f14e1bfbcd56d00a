# What the end-to-end test scripts share (sourced): the Python they run programs with, a scratch
# folder removed at exit (with whatever each script adds to `on_exit`), and checks that count
# failures and a closing line that says how it went.
#   check WHAT COMMAND...   runs COMMAND; "ok: WHAT", or "FAIL: WHAT" counted
#   finish NAME             prints the result and exits 1 when a check failed
#   start_standin [ARGS]    starts the stand-in LLM server of $examples (sets $port), stopped at
#   stop_standin            exit if the script did not stop it
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
work=$(mktemp -d)
on_exit=()
cleanup_harness() {
  local step
  for step in "${on_exit[@]}"; do eval "$step"; done
  [ -n "${KEEP_WORK:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
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

standin_pid=
on_exit+=('[ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null')
start_standin() {
  "$python" "$examples/agents/standin_llm.py" "$@" > "$work/standin.out" &
  standin_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/standin.out" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's/listening on //p' "$work/standin.out")
  [ -n "$port" ] || { echo "FAIL: the stand-in LLM server did not start" >&2; exit 1; }
}
stop_standin() { kill "$standin_pid"; wait "$standin_pid" 2>/dev/null; standin_pid=; }
