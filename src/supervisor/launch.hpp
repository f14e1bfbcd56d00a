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

#include "floor/floor.hpp"
#include "supervisor/private_world.hpp"
#include "supervisor/root_launch.hpp"
#include "supervisor/supervisor.hpp"
#include "supervisor/workspace_view.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::supervisor {

// PROGRAM's path as the kernel will find it (a PATH search for a bare name).
std::optional<std::filesystem::path> locate(const std::string& program);

// The addresses HOST[:PORT] rules name, resolved here (throws, naming `flag` and the rule, when
// one is not HOST[:PORT] or does not resolve).
std::vector<floor::Endpoint> resolve_endpoints(const std::vector<std::string>& rules,
                                               const std::string& flag);
// The same as the preload library reads them: "family/hex-address/port,…".
std::string preload_allow_list(const std::vector<floor::Endpoint>& endpoints);

// What ties the program's processes to this run.
struct ProgramLinks {
  std::string mode;                 // "record", "replay" or "off"
  std::string socket_path;          // the supervisor's
  std::string workspace;            // canonical
  std::string home;                 // canonical; empty when its first changes are not taped
  std::string clock_map_path;       // replay
  uint16_t proxy_port = 0;          // the LLM proxy's, 0 when none
  std::string allowed;              // preload_allow_list()'s
  std::string allowed_names;        // the hosts --allow names, comma-separated (getaddrinfo's)
  std::string entropy_seed;         // 64 hex digits: the randomness every process draws from
  bool entropy_per_thread = false;  // each thread a process starts draws from its own stream
  bool thread_lanes = false;        // record: each thread's clock reads in a lane of its own
};

// The run's entropy seed (64 hex digits): drawn from the kernel when recording; a replay's is
// the recording's (its `entropy` record), or a new one when the tape holds none (then `why`).
std::string entropy_seed(const Tape* recorded, std::string& why);
// Whether threads draw from streams of their own: always in a recording; in a replay, as the
// recording did (its entropy record says so).
bool entropy_per_thread(const Tape* recorded);
// Where the LLM proxy listens first, from the run's entropy seed: the recording and its replays
// offer the program the same base URL whenever that port is free.
std::vector<uint16_t> proxy_ports(const std::string& seed_hex);

// This process's environment with what the preload library and the SDKs need added.
std::vector<std::string> program_environment(const RunOptions& options, const ProgramLinks& links);
// Takes `library` out of the environment's LD_PRELOAD (the entry goes when nothing is left).
void without_preload(std::vector<std::string>& env, const std::filesystem::path& library);

// Prepares the root program (see root_launch.hpp): in replay inside a private view of the
// workspace (a kernel overlay; a copy, with a warning in `outcome`, where the kernel gives no
// namespace), with the system-call floor beneath it when `filter` is given. Where the floor
// cannot be installed a replay refuses to start (throws) and a recording goes on without it,
// with a warning; `floored` says whether it holds. The root waits for PreparedRoot::go().
// As root, the program runs as pid 2 of a pid namespace of its own (record and replay alike, so
// that pids repeat); where the kernel refuses one, with the host's pids and a warning. Its /tmp
// is private (private_world.hpp) wherever it has a mount namespace: as root, and in a replay's
// namespace; so is a replay's home folder. Elsewhere, and where the kernel refuses them, they are
// the host's, with a warning.
struct RootExtras {
  int stdout_fd = -1;  // the program's stdout and stderr (the output relays); -1: ours
  int stderr_fd = -1;
  floor::ExecStopPlan exec_stop;  // the floor's whole reach: what its exec stop does
  std::filesystem::path run_dir;  // the run's own folder (the private /tmp's upper is there)
  // Replay: the home's files as the recording found them; its private home starts with them.
  std::vector<HomeFileFound> home_seeds;
};
PreparedRoot prepare_root(const RunOptions& options, WorkspaceView& view,
                          const std::filesystem::path& program, const std::vector<std::string>& env,
                          const floor::Filter* filter, RunOutcome& outcome, bool& floored,
                          const RootExtras& extras = {});

}  // namespace tapedeck::supervisor
