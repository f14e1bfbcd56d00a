#!/usr/bin/env bash
# Runs every test: the release build with -Wall -Wextra -Werror, the same tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, the clang-format check, and the reader's fuzzer
# for a bounded time. Installs what it needs first. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
# shared/ beside the checkout is optional: the vectors are in tests/vectors; the seed-anchor
# comparison (compat.seed) is skipped, saying so, without it.
[ -d ../shared/anchors ] || echo "tapedeck: ../shared not beside this checkout: the seed-anchor test will be skipped"
step() { printf '\n==> %s\n' "$*"; }

step "installing dependencies"
scripts/install-deps.sh

step "release build (-Werror) and tests"
scripts/build.sh release
ctest --test-dir build/release --output-on-failure -j2

step "ASan + UBSan build and tests"
scripts/build.sh asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan --output-on-failure -j2

step "clang-format"
scripts/check-format.sh

step "fuzzing the reader and hostile tapes (${TAPEDECK_FUZZ_SECONDS:-60}s each)"
scripts/fuzz.sh "${TAPEDECK_FUZZ_SECONDS:-60}"

echo
echo "all tests passed"
