#!/usr/bin/env bash
# Configures and builds one flavour of the project. Usage: scripts/build.sh [release|asan]
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
case $flavour in
  release) flags=(-DCMAKE_BUILD_TYPE=Release -DTAPEDECK_WERROR=ON) ;;
  asan) flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAPEDECK_WERROR=ON -DTAPEDECK_SANITIZE=ON) ;;
  *) echo "usage: scripts/build.sh [release|asan]" >&2; exit 2 ;;
esac
cmake -S . -B "build/$flavour" -G Ninja "${flags[@]}" >/dev/null
cmake --build "build/$flavour"
