#!/usr/bin/env bash
# What taping costs a program (issue 27's table), every row as a ratio measured side by side in
# one run, runs alternating (medians of N rounds):
#   python3 importing httpx and reading 200 workspace files   run --emit-tape / alone   (goal 1.3x)
#   1,000,000 clock_gettime (C)                               run --emit-tape / libfaketime, which
#                                                             fakes and tapes nothing (goal 2x)
#   make -j2 of 41 C files                                    run --emit-tape / alone   (goal 1.2x)
#   a clock read served by the floor (a static program)       µs a read taped (goal 3 µs), from
#                                                             the program taped doing none and N
#   a Go program without sleeps (2,000 time.Now(), 200 files, 5 subprocesses)
#                                                             run --emit-tape / alone   (goal 3x)
#   a small workspace file read, taped (the preload)          µs a read (goal 20 µs)
#   each recorded subprocess (`true` 200 times from sh)       ms a subprocess (goal 0.5 ms)
#   Claude Code, a task against the stand-in (when tests/coding_agents is installed)
#                                                             recorded / alone
#
# Usage: bench/taping_costs.sh [--rounds N] [--dir DIR] (default 5 rounds; DIR on tmpfs when there
# is room). Expects a release build; libfaketime from Debian's faketime (install-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source bench/common.sh
parse_bench_args "$@"
td=$root/build/release/tapedeck
programs=$root/build/release/bench
[ -x "$td" ] && [ -x "$programs/clock_calls_static" ] ||
  { echo "bench/taping_costs.sh: build first (scripts/build.sh release)" >&2; exit 2; }
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
faketime_lib=$(ls /usr/lib/*/faketime/libfaketime.so.1 2> /dev/null | head -1 || true)
scratch_dir taping $((512 * 1024))
echo "(tapes and files in $dir)"

# pair NAME A-LABEL B-LABEL -- A... -- B...: medians of both, alternating, and B / A.
pair() {
  local name=$1 a_label=$2 b_label=$3
  shift 3
  [ "$1" = -- ] && shift
  local a=() b=()
  while [ "$1" != -- ]; do a+=("$1"); shift; done
  shift
  b=("$@")
  rm -f "$dir"/{a,b}.samples
  for ((round = 0; round < rounds; round++)); do
    seconds "${a[@]}" >> "$dir/a.samples"
    seconds "${b[@]}" >> "$dir/b.samples"
  done
  A=$(median < "$dir/a.samples")
  B=$(median < "$dir/b.samples")
  printf '%-46s %s %7ss   %s %7ss   %6sx\n' "$name" "$a_label" "$A" "$b_label" "$B" "$(ratio "$B" "$A")"
}
per_unit() { awk -v t="$1" -v b="$2" -v n="$3" -v scale="$4" 'BEGIN {printf "%.2f", scale * (t - b) / n}'; }
taped() { "$td" run -q --overwrite --emit-tape "$dir/bench.tape" -- "$@"; }

mkdir -p "$dir/ws/files" && cd "$dir/ws"
for i in $(seq 0 199); do echo "workspace file $i" > "files/f$i"; done

echo "== the table (medians of $rounds)"
if "$python" -c "import httpx" 2> /dev/null; then
  cat > "$dir/httpx_files.py" << 'PY'
import os, httpx
print(sum(len(open(os.path.join("files", n)).read()) for n in sorted(os.listdir("files"))))
PY
  pair "python3 + httpx + 200 file reads" alone "run --emit-tape" \
    -- "$python" "$dir/httpx_files.py" -- taped "$python" "$dir/httpx_files.py"
else
  echo "python3 + httpx: skipped (no httpx; install-deps installs python3-httpx)"
fi

if [ -n "$faketime_lib" ]; then
  pair "1,000,000 clock_gettime" libfaketime "run --emit-tape" \
    -- env LD_PRELOAD="$faketime_lib" FAKETIME="@2026-01-01 00:00:00" "$programs/clock_calls" 1000000 \
    -- taped "$programs/clock_calls" 1000000
else
  echo "1,000,000 clock_gettime against libfaketime: skipped (install-deps installs faketime)"
fi

mkdir -p "$dir/make" && for i in $(seq 1 41); do
  printf 'int f%d(int x) { int s = 0; for (int i = 0; i < x; ++i) s += i * %d; return s; }\n' "$i" "$i" > "$dir/make/f$i.c"
done
printf 'OBJS := $(patsubst %%.c,%%.o,$(wildcard f*.c))\nall: $(OBJS)\n%%.o: %%.c\n\t$(CC) -O2 -c $< -o $@\nclean:\n\trm -f *.o\n' > "$dir/make/Makefile"
build() { make -s -C "$dir/make" clean > /dev/null && make -s -j2 -C "$dir/make"; }
export -f build
export dir
pair "make -j2, 41 C files" alone "run --emit-tape" -- bash -c build -- taped bash -c build

# A unit's cost: the same taped program doing none and doing N, so run's own start is not in it.
cd "$dir/ws/files"
pair "clock reads, a static program (floor)" "0 taped" "100,000 taped" \
  -- taped "$programs/clock_calls_static" 0 -- taped "$programs/clock_calls_static" 100000
echo "    a clock read served by the floor: $(per_unit "$B" "$A" 100000 1e6) us (goal 3 us)"
pair "small file reads (preload)" "0 taped" "200 taped" \
  -- taped "$programs/read_files" . 0 -- taped "$programs/read_files" . 200
echo "    a taped small file read: $(per_unit "$B" "$A" 200 1e6) us (goal 20 us)"
cd "$dir/ws"

if command -v go > /dev/null; then
  export GOCACHE=$dir/gocache GOPATH=$dir/gopath GO111MODULE=off
  (cd "$root/bench/programs" && go build -o "$dir/go_work" go_work.go)
  pair "Go: 2,000 Now, 200 reads, 5 execs" alone "run --emit-tape" -- "$dir/go_work" -- taped "$dir/go_work"
else
  echo "Go: skipped (go is not installed)"
fi

pair "subprocesses (true) from sh" "0 taped" "200 taped" \
  -- taped sh -c 'for i in $(seq 0); do /bin/true; done' \
  -- taped sh -c 'for i in $(seq 200); do /bin/true; done'
taped_each=$(per_unit "$B" "$A" 200 1e3)
pair "subprocesses (true) from sh, alone" "0" "200" \
  -- sh -c 'for i in $(seq 0); do /bin/true; done' -- sh -c 'for i in $(seq 200); do /bin/true; done'
alone_each=$(per_unit "$B" "$A" 200 1e3)
echo "    each recorded subprocess: $taped_each ms against $alone_each ms alone:" \
  "+$(awk -v t="$taped_each" -v a="$alone_each" 'BEGIN {printf "%.2f", t - a}') ms (goal 0.5 ms)"

claude=$root/tests/coding_agents/node_modules/.bin/claude
if [ -x "$claude" ]; then
  "$python" "$root/examples/agents/standin_llm.py" > "$dir/standin.log" &
  standin=$!
  trap 'kill $standin 2> /dev/null || true; rm -rf "$dir"' EXIT
  for _ in $(seq 100); do grep -q "listening on" "$dir/standin.log" && break; sleep 0.1; done
  port=$(sed -n 's/listening on //p' "$dir/standin.log")
  claude_alone() {
    rm -rf "$dir/cc" && mkdir -p "$dir/cc/home" && cd "$dir/cc" &&
      env HOME="$dir/cc/home" ANTHROPIC_API_KEY=sk-ant-bench ANTHROPIC_BASE_URL="http://127.0.0.1:$port" \
        "$claude" -p "Do the task." --output-format json --allowedTools Bash,Write,Read
  }
  claude_taped() {
    rm -rf "$dir/cc" && mkdir -p "$dir/cc/home" && cd "$dir/cc" &&
      env HOME="$dir/cc/home" ANTHROPIC_API_KEY=sk-ant-bench "$td" run -q --overwrite \
        --emit-tape "$dir/cc.tape" --llm-upstream "http://127.0.0.1:$port" -- \
        "$claude" -p "Do the task." --output-format json --allowedTools Bash,Write,Read
  }
  export -f claude_alone claude_taped
  export claude port td
  pair "Claude Code, a task (stand-in)" alone recorded -- bash -c claude_alone -- bash -c claude_taped
else
  echo "Claude Code: skipped (scripts/install-deps.sh installs it in tests/coding_agents)"
fi
