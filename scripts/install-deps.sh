#!/usr/bin/env bash
# Installs every Debian package tapedeck needs to build, test, fuzz and benchmark.
# Idempotent: packages already present are skipped, so a warm machine pays nothing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  clang clang-format libclang-rt-14-dev   # fuzzer + sanitizers + format check
  libsimdjson-dev libcli11-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  librust-blake3-dev                      # ships the official BLAKE3 C sources
  libdtl-dev                              # the overlay's unified diff
  libcurl4-openssl-dev                    # the LLM axis's HTTP client
  libcpp-httplib-dev                      # a local LLM server for the tests
  libpugixml-dev                          # check's JUnit XML report
  libseccomp-dev                          # the system-call floor's filter
  libre2-dev libvectorscan-dev            # credentials recognised by shape
  libzstd-dev zstd                        # compressed tapes (and the tests' reference decoder)
  libarchive-dev                          # packed tapes (a zstd-compressed tar)
  python3-dotenv                          # the .env agent of the secrets test
  python3-httpx                           # the streaming agent of the stream timing test
  golang-go musl-tools busybox-static     # Go and static programs under the floor (tests/floor)
  python3 time procps                     # (procps: pgrep, the tests' process trees)
  git zip unzip                           # the tools of the tool-effects test
  chromium                                # tapedeck view's browser test
  faketime                                # libfaketime, bench/taping_costs.sh's peer
)
# The seed anchor (shared/anchors/seed-rust) builds from Debian's Rust crates.
packages+=(librust-serde-json-dev librust-serde-derive-dev librust-tempfile-dev)
command -v cargo >/dev/null 2>&1 || packages+=(cargo rustc)
# The machine image ships Node.js with npm; Debian's packages only where they are missing.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

# install_missing PACKAGE...: installs those not installed yet.
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "install-deps: installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_missing "${packages[@]}"

# CPython's own test modules, for Debian's python3 (the suite run recorded and replayed by
# tests/compat/cpython_suites_test.sh): the package is named by the interpreter's version.
python_version=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
install_missing "libpython${python_version}-testsuite"

# npm packages of the tests, versions pinned by their lock files: playwright-core drives
# Chromium for the view test; the official OpenAI SDK is the proxy test's client; the OpenAI
# Agents SDK runs the agent of the agents_sdk test; Claude Code and Gemini CLI are the
# coding_agents tests' agents (checked by the last added, so that an older install gets it).
here=$(cd "$(dirname "$0")/.." && pwd)
for suite in view:playwright-core proxy:openai agents_sdk:@openai/agents \
  coding_agents:@google/gemini-cli; do
  dir=$here/tests/${suite%%:*}
  if [ ! -d "$dir/node_modules/${suite#*:}" ]; then
    echo "install-deps: npm ci in tests/${suite%%:*}" >&2
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
  fi
done
