#!/usr/bin/env bash
# A tape is untrusted input. A recording of a program whose subprocess makes a folder and writes
# a file in it, run in a subfolder, is edited so that its paths climb out of the workspace (`..`
# up front, hidden mid-path, absolute, out of the run's private /tmp with `..`, a cwd of ../.., a
# rename's target outside, a hard link to, a mode set on and a folder removal of something
# outside): `verify` names each record (exit 1), `replay` and `check` refuse it (exit 2, one line)
# and nothing outside the workspace changes. A write edited to name a file of the host's /tmp is
# made in the replay's own /tmp: the host's file stays as it was. A manifest naming the root as workspace stops `check`. A link to / that the
# program makes in the view is not followed by the replayed subprocess's write. As root, the same
# again as an unprivileged user (nobody).
# Usage: hostile_tape_test.sh TAPEDECK
set -uo pipefail
td=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
source "$here/../harness.sh"

# as_user COMMAND...: COMMAND as the user this pass runs as.
as_user() { "$@"; }

one_pass() {
  local who=$1 root=$2
  local ws=$root/ws outside=$root/outside
  mkdir -p "$ws/sub" "$outside"
  echo canary > "$outside/keep.txt"
  cat > "$ws/p.py" <<'PY'
import os, subprocess, sys
if len(sys.argv) > 1:
    os.symlink("/", "up")  # a link out of the view, made by the program itself
subprocess.run(["sh", "-c", "mkdir -p d && echo hi > d/x.txt && mv d/x.txt d/y.txt && ln d/y.txt d/z.txt"])
subprocess.run(["chmod", "600", "d/y.txt"])
subprocess.run(["mkdir", "-p", "e/f"])
subprocess.run(["rm", "-rf", "e"])
subprocess.run(["true"], cwd="sub")
PY
  [ "$who" = nobody ] && chown -R nobody:nogroup "$root"
  (cd "$ws" && as_user "$td" run -q --emit-tape "$root/p.tape" -- python3 p.py) > /dev/null 2>&1
  check "$who: recorded" grep -q '"folder_made","path":"d"' "$root/p.tape"
  rm -rf "$ws/d"
  local snapshot
  snapshot=$(cd "$root" && find outside ws -printf '%p %s\n' | sort; cat "$outside/keep.txt")
  local name from to
  while IFS='|' read -r name from to; do
    sed -e "s#$from#$to#" "$root/p.tape" > "$root/bad.tape"
    cp -r "$root/p.tape.cas" "$root/bad.tape.cas"
    grep -q "$to" "$root/bad.tape" || { fail "$who: $name: the edit took"; continue; }
    as_user "$td" verify "$root/bad.tape" > "$root/verify.out" 2>&1
    check "$who: $name: verify refuses it, naming the record (exit 1)" \
      bash -c "[ $? = 1 ] && grep -q 'unsafe_path' '$root/verify.out'"
    (cd "$ws" && as_user "$td" replay "$root/bad.tape" -- python3 p.py) > /dev/null 2> "$root/replay.err"
    check "$who: $name: replay refuses it before anything runs (exit 2, one line)" \
      bash -c "[ $? = 2 ] && [ \$(wc -l < '$root/replay.err') = 1 ] && grep -q 'refused' '$root/replay.err'"
    printf '{"tapedeck_manifest":1,"command":["python3","p.py"],"cwd":"ws","workspace":"ws"}\n' \
      > "$root/bad.tape.manifest"
    as_user "$td" check "$root/bad.tape" > /dev/null 2> "$root/check.err"
    check "$who: $name: check refuses it (exit 2, one line)" \
      bash -c "[ $? = 2 ] && [ \$(wc -l < '$root/check.err') = 1 ]"
    check "$who: $name: nothing outside the workspace changed" test "$snapshot" = "$(
      cd "$root" && find outside ws -printf '%p %s\n' | sort; cat "$outside/keep.txt")"
    rm -rf "$root/bad.tape" "$root/bad.tape.cas" "$root/bad.tape.manifest"
  done <<EDITS
relative ..|"folder_made","path":"d"|"folder_made","path":"../outside/made"
.. mid-path|"path":"d/y.txt"|"path":"d/../../outside/keep.txt"
absolute|"path":"d/y.txt"|"path":"/etc/tapedeck-hostile/keep.txt"
the private /tmp climbed out of|"path":"d/y.txt"|"path":"/tmp/..$outside/keep.txt"
cwd of ../..|"cwd":"sub"|"cwd":"../.."
a rename's target outside|"path":"d/y.txt","content_hash"|"path":"../outside/y.txt","content_hash"
a hard link to a file outside|"existing":"d/y.txt"|"existing":"../outside/keep.txt"
a mode set outside|"kind":"mode_set","path":"d/y.txt"|"kind":"mode_set","path":"../outside/keep.txt"
a folder removed outside|"kind":"folder_removed","path":"e"|"kind":"folder_removed","path":"../outside"
EDITS
  printf '{"tapedeck_manifest":1,"command":["python3","p.py"],"cwd":"ws","workspace":"/"}\n' \
    > "$root/p.tape.manifest"
  as_user "$td" check "$root/p.tape" > /dev/null 2> "$root/check.err"
  check "$who: a manifest whose workspace is / stops check (exit 2, named)" \
    bash -c "[ $? = 2 ] && grep -q '\"workspace\": \"/\" is not relative' '$root/check.err'"
  local climb=..
  for _ in $(seq "$(tr -cd / <<< "$root" | wc -c)"); do climb=$climb/..; done
  printf '{"tapedeck_manifest":1,"command":["python3","p.py"],"cwd":"ws","workspace":"%s"}\n' \
    "$climb" > "$root/p.tape.manifest"
  as_user "$td" check "$root/p.tape" > /dev/null 2> "$root/check.err"
  check "$who: a manifest whose workspace climbs to the root stops check (exit 2)" \
    bash -c "[ $? = 2 ] && grep -q 'reaches the file system' '$root/check.err'"

  printf '{"tapedeck_manifest":1,"command":["touch","%s"],"cwd":"ws","workspace":"ws"}\n' \
    "$root/ran" > "$root/p.tape.manifest"
  as_user "$td" check --dry-run "$root/p.tape" > "$root/dry.out" 2>&1
  check "$who: check --dry-run prints the command a manifest would run, and runs nothing" \
    bash -c "[ $? = 0 ] && grep -q 'tapedeck replay .* -- touch $root/ran\$' '$root/dry.out' &&
             [ ! -e '$root/ran' ]"
  as_user "$td" check --dry-run --json "$root/p.tape" > "$root/dry.json" 2>&1
  check "$who: check --dry-run --json gives the same as one JSON object" \
    "$python" -c "import json,sys; c=json.load(open(sys.argv[1]))['cases'][0]
assert c['command'] == ['touch', sys.argv[2]] and c['workspace'].endswith('/ws'), c" \
    "$root/dry.json" "$root/ran"

  # The subprocess's write, edited to go through a link the program makes to / in the view: a
  # relative, normal path the gate lets through, which the view's walk does not follow.
  local through=up${outside}/through.txt
  (cd "$ws" && rm -f up && as_user "$td" run -q --emit-tape "$root/link.tape" -- python3 p.py link) \
    > /dev/null 2>&1
  rm -rf "$ws/d" "$ws/up"
  sed -i -e "s#\"path\":\"d/y.txt\",\"content_hash\"#\"path\":\"$through\",\"content_hash\"#" "$root/link.tape"
  check "$who: link: the edited tape passes verify (its paths are beneath the workspace)" \
    as_user "$td" verify "$root/link.tape"
  (cd "$ws" && as_user "$td" replay -q "$root/link.tape" -- python3 p.py link) > /dev/null 2>&1
  check "$who: link: replayed (exit 0)" test $? = 0
  check "$who: link: the replayed write does not go through the program's link to /" \
    test ! -e "$outside/through.txt"
  check "$who: link: nothing outside the workspace changed" test "$snapshot" = "$(
    cd "$root" && find outside ws -printf '%p %s\n' | sort; cat "$outside/keep.txt")"

  # The subprocess's write, edited to name a file of the host's /tmp: a path of the run's private
  # /tmp, which the gate lets through and the replay makes in its own /tmp, never the host's; and
  # its folder removal, edited to name a host folder. Replayed with a trace there, which mounts
  # that folder of the host's back beneath the run's /tmp: the replay's writes do not enter it.
  local host_temp
  host_temp=$(mktemp -d /tmp/tapedeck-hostile-XXXXXX)
  on_exit+=("rm -rf '$host_temp'")
  echo canary > "$host_temp/keep.txt"
  chmod -R a+rwX "$host_temp"
  local edit
  for edit in "\"path\":\"d/y.txt\",\"content_hash\"#\"path\":\"$host_temp/keep.txt\",\"content_hash\"" \
    "\"kind\":\"folder_removed\",\"path\":\"e\"#\"kind\":\"folder_removed\",\"path\":\"$host_temp\""; do
    sed -e "s#$edit#" "$root/p.tape" > "$root/temp.tape"
    rm -rf "$root/temp.tape.cas" && cp -r "$root/p.tape.cas" "$root/temp.tape.cas"
    grep -q "$host_temp" "$root/temp.tape" || { fail "$who: host /tmp: the edit took"; continue; }
    check "$who: host /tmp: the edited tape passes verify" as_user "$td" verify "$root/temp.tape"
    (cd "$ws" && TAPEDECK_TRACE=$host_temp/trace as_user "$td" replay -q "$root/temp.tape" -- python3 p.py) \
      > /dev/null 2>&1
    check "$who: host /tmp: replayed (exit 0)" test $? = 0
    check "$who: host /tmp: the host's file is as it was" test "$(cat "$host_temp/keep.txt")" = canary
    check "$who: host /tmp: nothing outside the workspace changed" test "$snapshot" = "$(
      cd "$root" && find outside ws -printf '%p %s\n' | sort; cat "$outside/keep.txt")"
  done
}

mkdir -p "$work/root"
one_pass "$(id -un)" "$work/root"
if [ "$(id -u)" = 0 ]; then
  as_user() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }
  chmod 755 "$work"
  # The user must reach the binaries (tapedeck finds its preload library and exec shim beside
  # itself), wherever the build is: a copy of them in a folder it can read.
  mkdir -p "$work/bin"
  cp "$td" "$(dirname "$td")/tapedeck-exec" "$(dirname "$td")/libtapedeck_preload.so" "$work/bin/"
  chmod -R a+rX "$work/bin"
  td=$work/bin/tapedeck
  mkdir -p "$work/nobody/suite" && chown -R nobody:nogroup "$work/nobody"
  # (tapedeck's run folders go to TMPDIR: one the user can write)
  TMPDIR=$work/nobody one_pass nobody "$work/nobody/suite"
  chown -R root "$work/nobody"
fi

finish hostile_tape
