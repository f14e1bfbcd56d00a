// Starting the program under the testbench: where it is, what it can be told (the environment
// the preload library reads), which of its effects the preload cannot reach, and the start
// itself (in replay, inside the private view of the workspace).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "supervisor/supervisor.hpp"
#include "supervisor/workspace_view.hpp"

namespace tapedeck::supervisor {

// PROGRAM's path as the kernel will find it (a PATH search for a bare name).
std::optional<std::filesystem::path> locate(const std::string& program);

// "family/hex-address/port" entries for the preload, from HOST[:PORT] rules resolved here
// (throws, naming the rule, when one is not HOST[:PORT] or does not resolve).
std::string resolve_allowed(const std::vector<std::string>& rules);

// What ties the program's processes to this run.
struct ProgramLinks {
  std::string mode;            // "record", "replay" or "off"
  std::string socket_path;     // the supervisor's
  std::string workspace;       // canonical
  std::string clock_map_path;  // replay
  uint16_t proxy_port = 0;     // the LLM proxy's, 0 when none
  std::string allowed;         // resolve_allowed()'s
};

// This process's environment with what the preload library and the SDKs need added.
std::vector<std::string> program_environment(const RunOptions& options, const ProgramLinks& links);

// Starts the root program: as it is when recording, in a private view of the workspace when
// replaying. Returns posix_spawn's error (0 when started); a warning of a fallback goes to
// `outcome`.
int start_program(const RunOptions& options, WorkspaceView& view,
                  const std::filesystem::path& program, std::vector<char*>& argv,
                  std::vector<char*>& envp, const std::vector<std::string>& env, pid_t& pid,
                  RunOutcome& outcome);

}  // namespace tapedeck::supervisor
