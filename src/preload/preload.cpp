// libtapedeck_preload.so: put under `tapedeck run` / `tapedeck replay` through LD_PRELOAD, it
// routes a program's effects through the supervisor that owns the tape:
//
//   clock reads   record: the real clock, cut to the millisecond the tape keeps; replay: the
//                 recorded values in order (clock_hooks.cpp)
//   sleeps        record: real, and taped; replay: virtual, returning at once
//   files         under the workspace only: reads, writes (at close), deletes, renames; replay
//                 runs in a private view of the workspace and is given the recorded bytes of
//                 what the recording read (file_hooks.cpp, path_hooks.cpp)
//   exec          of any process but the root (whose own exec just continues it) goes through
//                 tapedeck-exec, which records the subprocess's output or serves it in replay
//   connect       to the internet: denied unless allowed; loopback to tapedeck's proxy passes
//
// This file reads the configuration the supervisor put in the environment, once, at load; the
// rooms and their contract are in interposer.hpp.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "preload/interposer.hpp"
#include "preload/trace.hpp"

extern char** environ;

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

constinit Config config;

thread_local bool in_hook __attribute__((tls_model("initial-exec"))) = false;

void copy_env(const char* name, char* out, size_t capacity) {
  const char* value = getenv(name);
  if (value != nullptr) snprintf(out, capacity, "%s", value);
}

__attribute__((constructor)) void start_up() {
  HookScope scope;
  resolve_all();
  const char* mode = getenv("TAPEDECK_MODE");
  if (mode == nullptr) return;  // loaded outside tapedeck: every hook is plain libc
  config.active = true;
  config.floor = getenv("TAPEDECK_FLOOR") != nullptr;
  if (strcmp(mode, "record") == 0) config.mode = Mode::record;
  if (strcmp(mode, "replay") == 0) config.mode = Mode::replay;
  copy_env("TAPEDECK_SOCKET", config.socket_path, sizeof config.socket_path);
  copy_env("TAPEDECK_WORKSPACE", config.workspace, sizeof config.workspace);
  config.workspace_len = strlen(config.workspace);
  copy_env("TAPEDECK_HOME", config.home, sizeof config.home);
  config.home_len = strlen(config.home);
  copy_env("TAPEDECK_VIEW", config.view, sizeof config.view);
  config.view_len = strlen(config.view);
  copy_env("TAPEDECK_EXEC", config.exec_shim, sizeof config.exec_shim);
  if (const char* pid = getenv("TAPEDECK_ROOT_PARENT_PID")) config.root_parent_pid = atoi(pid);
  if (const char* spawn = getenv("TAPEDECK_SPAWN")) config.spawn = strtoull(spawn, nullptr, 10);
  if (const char* port = getenv("TAPEDECK_PROXY_PORT")) {
    config.proxy_port = static_cast<uint16_t>(atoi(port));
  }
  parse_allowed(getenv("TAPEDECK_ALLOW"));
  copy_env("TAPEDECK_ALLOW_NAMES", config.allowed_names, sizeof config.allowed_names);
  if (config.mode == Mode::replay) {
    if (const char* map = getenv("TAPEDECK_CLOCK_MAP")) map_clock(map);
  }
  const char* per_thread = getenv("TAPEDECK_ENTROPY_THREADS");
  if (const char* lanes = getenv("TAPEDECK_THREAD_LANES"))
    config.thread_lanes = strcmp(lanes, "1") == 0;
  start_entropy(getenv("TAPEDECK_ENTROPY_SEED"), getenv("TAPEDECK_ENTROPY_KEY"),
                per_thread != nullptr && strcmp(per_thread, "1") == 0);
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    // The stream key is each process's own (with_entropy_key sets it at exec).
    if (strncmp(*entry, "TAPEDECK_ENTROPY_KEY=", 21) == 0) continue;
    if (is_kept_name(*entry) && config.kept_env_count < kMaxKeptEnv) {
      config.kept_env[config.kept_env_count++] = strdup(*entry);
    }
  }
  if (config.mode != Mode::off && (config.socket_path[0] == '\0' || config.exec_shim[0] == '\0')) {
    report("tapedeck: TAPEDECK_SOCKET or TAPEDECK_EXEC is missing; running untaped\n");
    config.mode = Mode::off;
  }
  if (config.mode != Mode::off) {
    open_trace();
    trap_raw_syscalls();
  }
  install_fork_handlers();
  install_thread_numbering();
}

// Files still open for writing at exit are complete now; their last buffered bytes too, since
// exit() flushed stdio before the library destructors run... except stdio streams that are
// flushed after us (see the README's limits).
__attribute__((destructor)) void shut_down() {
  if (config.mode == Mode::off) return;
  HookScope scope;
  report_open_writes();
  sync_with_supervisor();
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop
