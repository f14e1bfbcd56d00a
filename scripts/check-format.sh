#!/usr/bin/env bash
# Fails when any C or C++ file differs from what clang-format (.clang-format) would write.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.c' 2>/dev/null || find src include tests bench examples fuzz -name '*.[ch]pp')
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "not clang-formatted: $f (run: clang-format -i $f)"
    bad=1
  fi
done
[ "$bad" -eq 0 ] && echo "clang-format: ${#files[@]} files clean"
exit "$bad"
