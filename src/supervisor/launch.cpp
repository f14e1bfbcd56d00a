#include "supervisor/launch.hpp"

#include <elf.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <sstream>

#include "supervisor/tree_effects.hpp"
#include "tape/atomic_file.hpp"
#include "tapedeck/testbench.hpp"

extern char** environ;

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

// "family/hex-address/port" entries for the preload, from HOST[:PORT] rules resolved here.
std::string resolve_allowed(const std::vector<std::string>& rules) {
  std::string out;
  for (const std::string& rule : rules) {
    NetworkPolicy::Rule parsed;
    try {
      parsed = NetworkPolicy::parse(rule);
    } catch (const std::invalid_argument&) {
      throw std::runtime_error("--allow " + rule +
                               ": not HOST or HOST:PORT (a port from 1 to 65535)");
    }
    if (parsed.subdomains) {
      throw std::runtime_error("--allow " + rule +
                               ": the program connects to addresses, so name the hosts themselves");
    }
    const std::string& host = parsed.host;
    const unsigned port = parsed.port.value_or(0);  // 0: every port
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) {
      throw std::runtime_error("--allow " + rule + ": cannot resolve " + host);
    }
    for (addrinfo* at = found; at != nullptr; at = at->ai_next) {
      const uint8_t* bytes = nullptr;
      size_t size = 0;
      if (at->ai_family == AF_INET) {
        bytes = reinterpret_cast<const uint8_t*>(
            &reinterpret_cast<sockaddr_in*>(at->ai_addr)->sin_addr);
        size = 4;
      } else if (at->ai_family == AF_INET6) {
        bytes = reinterpret_cast<const uint8_t*>(
            &reinterpret_cast<sockaddr_in6*>(at->ai_addr)->sin6_addr);
        size = 16;
      } else {
        continue;
      }
      char hex[33] = {};
      for (size_t i = 0; i < size; ++i) std::snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
      if (!out.empty()) out += ',';
      out += std::to_string(at->ai_family) + "/" + hex + "/" + std::to_string(port);
    }
    ::freeaddrinfo(found);
  }
  return out;
}

// PROGRAM's path as the kernel will find it (a PATH search for a bare name).
std::optional<fs::path> locate(const std::string& program) {
  if (program.find('/') != std::string::npos) return fs::path(program);
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0 && is_regular(candidate)) return candidate;
  }
  return std::nullopt;
}

std::vector<std::string> program_environment(const RunOptions& options, const ProgramLinks& links) {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text(*entry);
    const size_t equals = text.find('=');
    if (equals != std::string::npos) env[text.substr(0, equals)] = text.substr(equals + 1);
  }
  const std::string preload = fs::absolute(options.preload_library).string();
  env["LD_PRELOAD"] = env.contains("LD_PRELOAD") && !env["LD_PRELOAD"].empty()
                          ? preload + ":" + env["LD_PRELOAD"]
                          : preload;
  env["TAPEDECK_MODE"] = links.mode;
  env["TAPEDECK_SOCKET"] = links.socket_path;
  env["TAPEDECK_WORKSPACE"] = links.workspace;
  env["TAPEDECK_EXEC"] = fs::absolute(options.exec_shim).string();
  env["TAPEDECK_SUPERVISOR_PID"] = std::to_string(::getpid());
  env["TAPEDECK_ALLOW"] = links.allowed;
  if (options.mode == RunOptions::Mode::replay) env["TAPEDECK_CLOCK_MAP"] = links.clock_map_path;
  if (links.proxy_port != 0) {
    const std::string proxy = "http://127.0.0.1:" + std::to_string(links.proxy_port);
    env["TAPEDECK_PROXY_PORT"] = std::to_string(links.proxy_port);
    env["TAPEDECK_LLM_URL"] = proxy;
    env["OPENAI_BASE_URL"] = proxy + "/v1";
    env["ANTHROPIC_BASE_URL"] = proxy;
    if (!options.llm_upstream.empty()) {
      env["TAPEDECK_UPSTREAM_OPENAI_BASE_URL"] = options.llm_upstream + "/v1";
      env["TAPEDECK_UPSTREAM_ANTHROPIC_BASE_URL"] = options.llm_upstream;
    }
  }
  // Bytecode caches are the interpreter's, not the program's: they must not become file writes.
  env["PYTHONDONTWRITEBYTECODE"] = "1";
  std::vector<std::string> out;
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

// Starts the root program: as it is when recording, in a private view of the workspace when
// replaying (see workspace_view.hpp). Returns posix_spawn's error (0 when started).
int start_program(const RunOptions& options, WorkspaceView& view, const fs::path& program,
                  std::vector<char*>& argv, std::vector<char*>& envp,
                  const std::vector<std::string>& env, pid_t& pid, RunOutcome& outcome) {
  const fs::path cwd = fs::current_path();
  if (options.mode == RunOptions::Mode::replay && options.isolation != Isolation::copy) {
    std::string why;
    if (auto started = view.start_in_overlay(program.c_str(), argv.data(), envp.data(), cwd, why)) {
      pid = *started;
      return 0;
    }
    if (options.isolation == Isolation::kernel_overlay) {
      throw std::runtime_error(
          "--isolation namespace: the kernel refused a private view of the "
          "workspace (" +
          why + ")");
    }
    outcome.warnings.push_back("no mount namespace for the replay (" + why +
                               "): replaying in a copy of the workspace instead; programs the "
                               "preload library does not reach see the real workspace");
  }
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  std::vector<std::string> copy_env;
  std::vector<char*> copy_envp;
  char* const* environment = envp.data();
  fs::path start_in;
  if (options.mode == RunOptions::Mode::replay) {
    view.make_copy();
    start_in = view.translate(cwd);
    ::posix_spawn_file_actions_addchdir_np(&actions, start_in.c_str());
    copy_env = env;
    copy_env.push_back("TAPEDECK_VIEW=" + view.copy_root().string());
    for (std::string& entry : copy_env) {
      if (entry.starts_with("PWD=")) entry = "PWD=" + start_in.string();
    }
    for (std::string& entry : copy_env) copy_envp.push_back(entry.data());
    copy_envp.push_back(nullptr);
    environment = copy_envp.data();
  }
  const int spawned =
      ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environment);
  ::posix_spawn_file_actions_destroy(&actions);
  return spawned;
}

std::optional<std::string> interposition_warning(const fs::path& program) {
  const std::optional<std::string> bytes = detail::read_file(program);
  if (!bytes) return std::nullopt;
  const std::string& image = *bytes;
  if (image.starts_with("#!")) {
    // A script: what matters is its interpreter.
    std::istringstream words(image.substr(2, image.find('\n') - 2));
    std::string interpreter;
    words >> interpreter;
    if (interpreter.empty() || fs::path(interpreter) == program) return std::nullopt;
    return interposition_warning(interpreter);
  }
  if (image.size() < sizeof(Elf64_Ehdr) || image.compare(0, 4, ELFMAG) != 0 ||
      image[EI_CLASS] != ELFCLASS64) {
    return std::nullopt;
  }
  Elf64_Ehdr header;
  std::memcpy(&header, image.data(), sizeof header);
  bool has_interpreter = false;
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    const uint64_t at = header.e_phoff + uint64_t{i} * header.e_phentsize;
    if (at + sizeof(Elf64_Phdr) > image.size()) break;
    Elf64_Phdr segment;
    std::memcpy(&segment, image.data() + at, sizeof segment);
    if (segment.p_type == PT_INTERP) has_interpreter = true;
  }
  if (image.find("Go build ID:") != std::string::npos) {
    return program.string() +
           " is a Go program: it reads the clock through the vDSO and makes system calls "
           "itself, so its clock reads, sleeps, file effects and execs are not taped; only its "
           "LLM calls through the proxy are";
  }
  if (!has_interpreter) {
    return program.string() +
           " is statically linked: there is no libc to interpose, so its clock reads, sleeps, "
           "file effects, execs and connects are not taped; only its LLM calls through the "
           "proxy are";
  }
  return std::nullopt;
}

}  // namespace tapedeck::supervisor
