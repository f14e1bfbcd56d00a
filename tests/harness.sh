# What the end-to-end test scripts share (sourced): the Python they run programs with, a scratch
# folder removed at exit (with whatever each script adds to `on_exit`), and checks that count
# failures and a closing line that says how it went.
#   check WHAT COMMAND...   runs COMMAND; "ok: WHAT", or "FAIL: WHAT" counted
#   finish NAME             prints the result and exits 1 when a check failed
#   start_standin [ARGS]    starts the stand-in LLM server of $examples (sets $port), stopped at
#   stop_standin            exit if the script did not stop it
#   has TAPE PATTERN        whether `$td show TAPE` has a line matching PATTERN
# KEEP_WORK=1 keeps the scratch folder; KEEP_FAILED=DIR copies it into DIR when a check failed
# (a flake seen once under load can then be read: its tapes, outputs and logs).
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
work=$(mktemp -d)
on_exit=()
cleanup_harness() {
  local step
  for step in "${on_exit[@]}"; do eval "$step"; done
  if [ "$failures" -gt 0 ] && [ -n "${KEEP_FAILED:-}" ]; then
    mkdir -p "$KEEP_FAILED" && cp -a "$work" "$KEEP_FAILED/" && echo "failed work kept in $KEEP_FAILED/${work##*/}" >&2
  fi
  [ -n "${KEEP_WORK:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup_harness EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# (grep reads all of show's output: no SIGPIPE under pipefail)
has() { "$td" show "$1" | grep "$2" > /dev/null; }
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; else fail "$what"; fi; }
finish() {
  echo
  if [ "$failures" -gt 0 ]; then echo "$failures check(s) failed"; exit 1; fi
  echo "all $1 checks passed"
}

standin_pid=
on_exit+=('[ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null')
start_standin() {
  # The last stand-in's "listening on" must not be read before this one's shell truncates the
  # file: a script that starts it twice then called a port nothing listened on.
  rm -f "$work/standin.out"
  "$python" "$examples/agents/standin_llm.py" "$@" > "$work/standin.out" &
  standin_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/standin.out" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's/listening on //p' "$work/standin.out")
  [ -n "$port" ] || { echo "FAIL: the stand-in LLM server did not start" >&2; exit 1; }
}
stop_standin() { kill "$standin_pid"; wait "$standin_pid" 2>/dev/null; standin_pid=; }

# bounded SECONDS COMMAND...: runs COMMAND (a function is fine: it runs in a subshell); one still
# running after SECONDS is reported with its process tree (each thread's state, kernel wait
# channel and system call: where it hangs), killed, and fails with 124.
bounded() {
  local limit=$1 tenths=0
  shift
  "$@" &
  local job=$!
  while kill -0 "$job" 2> /dev/null; do
    if [ "$tenths" -ge $((limit * 10)) ]; then
      echo "FAIL: still running after ${limit}s: $*" >&2
      local process thread
      for process in $(tree_below "$job"); do
        echo "  $process: $(tr '\0' ' ' < "/proc/$process/cmdline" 2> /dev/null | cut -c1-160)" >&2
        for thread in /proc/"$process"/task/*; do
          echo "    ${thread##*/} $(cut -d' ' -f3 "$thread/stat" 2> /dev/null)" \
            "wchan=$(cat "$thread/wchan" 2> /dev/null) syscall=$(cut -d' ' -f1-4 "$thread/syscall" 2> /dev/null)" >&2
        done
      done
      kill -KILL $(tree_below "$job") 2> /dev/null
      wait "$job" 2> /dev/null
      return 124
    fi
    sleep 0.1
    tenths=$((tenths + 1))
  done
  wait "$job"
}
tree_below() {
  local child
  echo "$1"
  for child in $(pgrep -P "$1"); do tree_below "$child"; done
}
