#!/usr/bin/env bash
# Claude Code (@anthropic-ai/claude-code, pinned in package-lock.json: one Bun-built binary) does
# a coding agent's task against the stand-in's Messages API (examples/agents/standin_llm.py:
# streamed tool_use blocks for Bash commands that sleep a second, draw $RANDOM, read
# `date +%s%N` and make a uuid4, then Write and Read of notes.txt), HOME inside the workspace.
# Recorded once, replayed three times with the stand-in stopped. Issue 25's acceptance, checked
# whole: every replay exits 0 and prints the recording's JSON byte for byte (session id,
# durations and costs included), passes semantic fidelity and leaves the workspace untouched;
# the key is nowhere on the tape; the tape holds the Write and the Read as file_write and
# file_read of notes.txt. Prints the replays' time against the recording's.
# Not run by default (CODING_AGENTS=1 runs it): a replay still stops at Claude Code's second
# subprocess, whose command names a file made from Date.now(), served a few milliseconds off (its
# main thread reads the wall clock a different number of times on each run; see the README's
# limits).
# Usage: claude_code_test.sh TAPEDECK EXAMPLES_DIR
set -uo pipefail
td=$(realpath "$1")
examples=$(realpath "$2")
here=$(realpath "$(dirname "$0")")
source "$here/../harness.sh"
source "$here/replays.sh"
agent_under_test claude "Claude Code" "does not replay yet"
claude=$agent_program
key=$(printf "sk-ant-%s" tapedeck-test-placeholder)
agent() { env HOME="$work/ws/home" ANTHROPIC_API_KEY="$key" "$@" -- "$claude" -p "Do the task." \
  --output-format json --allowedTools Bash,Write,Read; }

mkdir -p "$work/ws/home" && cd "$work/ws"
record_task claude
cp -a "$work/ws" "$work/before"
replays_of claude
check "the replays left the workspace as it was" diff -r "$work/before" "$work/ws"
finish "claude code"
