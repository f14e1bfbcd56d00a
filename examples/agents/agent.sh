#!/usr/bin/env bash
# An example agent in plain bash that touches every effect tapedeck tapes: the clock (date, the
# shell's own $EPOCHSECONDS), a sleep, files in its workspace (read, write, delete), subprocesses,
# and an LLM over HTTP at TAPEDECK_LLM_URL, spoken with bash's own /dev/tcp (no curl needed).
#
#   TAPEDECK_LLM_URL=http://127.0.0.1:8080 OPENAI_API_KEY=... bash agent.sh
set -euo pipefail

llm_url=${TAPEDECK_LLM_URL:-http://127.0.0.1:8080}
hostport=${llm_url#http://}
host=${hostport%%:*}
port=${hostport##*:}
port=${port%%/*}

# One chat completion over a plain HTTP/1.1 connection; prints the answer's content.
chat() {
  local prompt=$1 body response length=0 line content
  body=$(printf '{"model":"standin-1","messages":[{"role":"user","content":"%s"}]}' "$prompt")
  exec 3<>"/dev/tcp/$host/$port"
  printf 'POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
    "$hostport" "${OPENAI_API_KEY:-sk-example-key}" "${#body}" "$body" >&3
  while IFS= read -r line <&3; do   # headers, up to the blank line
    line=${line%$'\r'}
    [[ -z $line ]] && break
    [[ ${line,,} == content-length:* ]] && length=${line#*: }
  done
  IFS= read -r -N "$length" response <&3 || true
  exec 3<&-
  content=${response#*\"content\": \"}
  printf '%s\n' "${content%%\"*}"
}

echo "agent started at $(date -u +%Y-%m-%dT%H:%M:%SZ) (epoch $EPOCHSECONDS)"
mapfile -t tasks < tasks.txt
echo "tasks: ${#tasks[@]}"
echo "words: $(wc -w < tasks.txt)"

plan=$(chat "Pick the most urgent of: ${tasks[*]}")
echo "plan: $plan"
sleep 1   # back off before writing, as a polite agent does
started=$SECONDS
{
  echo "# Report"
  echo
  echo "$plan"
} > report.md
rm -f scratch.tmp && echo "cleared scratch.tmp"
echo "report: $(wc -c < report.md) bytes, $(( SECONDS - started )) s after the back-off"
