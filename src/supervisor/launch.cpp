#include "supervisor/launch.hpp"

#include <elf.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <string_view>
#include <vector>

#include "floor/elf_file.hpp"
#include "supervisor/private_world.hpp"
#include "supervisor/root_launch.hpp"
#include "supervisor/tree_effects.hpp"
#include "tape/atomic_file.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/testbench.hpp"

extern char** environ;

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

std::vector<floor::Endpoint> resolve_endpoints(const std::vector<std::string>& rules,
                                               const std::string& flag) {
  std::vector<floor::Endpoint> out;
  for (const std::string& rule : rules) {
    NetworkPolicy::Rule parsed;
    try {
      parsed = NetworkPolicy::parse(rule);
    } catch (const std::invalid_argument&) {
      throw std::runtime_error(flag + " " + rule +
                               ": not HOST or HOST:PORT (a port from 1 to 65535)");
    }
    if (parsed.subdomains) {
      throw std::runtime_error(flag + " " + rule +
                               ": the program connects to addresses, so name the hosts themselves");
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(parsed.host.c_str(), nullptr, &hints, &found) != 0) {
      throw std::runtime_error(flag + " " + rule + ": cannot resolve " + parsed.host);
    }
    for (addrinfo* at = found; at != nullptr; at = at->ai_next) {
      floor::Endpoint endpoint;
      endpoint.family = at->ai_family;
      endpoint.port = parsed.port.value_or(0);  // 0: every port
      if (at->ai_family == AF_INET) {
        std::memcpy(endpoint.address, &reinterpret_cast<sockaddr_in*>(at->ai_addr)->sin_addr, 4);
      } else if (at->ai_family == AF_INET6) {
        std::memcpy(endpoint.address, &reinterpret_cast<sockaddr_in6*>(at->ai_addr)->sin6_addr, 16);
      } else {
        continue;
      }
      out.push_back(endpoint);
    }
    ::freeaddrinfo(found);
  }
  return out;
}

std::string preload_allow_list(const std::vector<floor::Endpoint>& endpoints) {
  std::string out;
  for (const floor::Endpoint& endpoint : endpoints) {
    const size_t size = endpoint.family == AF_INET ? 4 : 16;
    char hex[33] = {};
    for (size_t i = 0; i < size; ++i) std::snprintf(hex + 2 * i, 3, "%02x", endpoint.address[i]);
    if (!out.empty()) out += ',';
    out += std::to_string(endpoint.family) + "/" + hex + "/" + std::to_string(endpoint.port);
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

bool entropy_per_thread(const Tape* recorded) {
  if (recorded == nullptr) return true;
  for (const Record& record : recorded->records) {
    const auto* unknown = std::get_if<kind::Unknown>(&record.kind);
    if (unknown != nullptr && extension::entropy_seed(*unknown)) {
      return extension::entropy_per_thread(*unknown);
    }
  }
  return false;
}

std::string entropy_seed(const Tape* recorded, std::string& why) {
  if (recorded != nullptr) {
    for (const Record& record : recorded->records) {
      const auto* unknown = std::get_if<kind::Unknown>(&record.kind);
      if (unknown == nullptr) continue;
      if (auto seed = extension::entropy_seed(*unknown)) return *seed;
    }
    why =
        "the tape holds no readable entropy record (recorded before tapedeck taped randomness, "
        "or damaged): the replay's random numbers differ from the recording's";
  }
  uint8_t bytes[32];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
  }
  char hex[65] = {};
  for (size_t i = 0; i < sizeof bytes; ++i) std::snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
  return hex;
}

std::vector<uint16_t> proxy_ports(const std::string& seed_hex) {
  // Below Linux's ephemeral range (32768 and up), where outgoing connections take their ports.
  constexpr uint16_t kFirst = 20000;
  constexpr uint16_t kCount = 12000;
  constexpr size_t kCandidates = 4;
  std::vector<uint16_t> ports;
  for (size_t at = 0; ports.size() < kCandidates && at + 4 <= seed_hex.size(); at += 4) {
    const unsigned long word = std::strtoul(seed_hex.substr(at, 4).c_str(), nullptr, 16);
    ports.push_back(static_cast<uint16_t>(kFirst + word % kCount));
  }
  return ports;
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
  if (!links.home.empty()) env["TAPEDECK_HOME"] = links.home;
  env["TAPEDECK_EXEC"] = fs::absolute(options.exec_shim).string();
  env["TAPEDECK_ALLOW"] = links.allowed;
  // Only with --allow: a variable the common run does not have would move the program's stack.
  if (!links.allowed_names.empty()) env["TAPEDECK_ALLOW_NAMES"] = links.allowed_names;
  if (!links.entropy_seed.empty()) env["TAPEDECK_ENTROPY_SEED"] = links.entropy_seed;
  if (links.entropy_per_thread) env["TAPEDECK_ENTROPY_THREADS"] = "1";
  if (links.thread_lanes) env["TAPEDECK_THREAD_LANES"] = "1";
  // Set in both modes (a recording's names a file that is never made): a variable only the replay
  // had would move the program's stack and heap, whose addresses end up in its random seeds.
  env["TAPEDECK_CLOCK_MAP"] = links.clock_map_path;
  if (links.proxy_port != 0) {
    const std::string proxy = "http://127.0.0.1:" + std::to_string(links.proxy_port);
    env["TAPEDECK_PROXY_PORT"] = std::to_string(links.proxy_port);
    env["TAPEDECK_LLM_URL"] = proxy;
    env["OPENAI_BASE_URL"] = proxy + "/v1";
    env["ANTHROPIC_BASE_URL"] = proxy;
    env["GOOGLE_GEMINI_BASE_URL"] = proxy;  // Google's Gen AI SDKs (Gemini CLI)
    // (The upstream, which a recording's subprocesses call directly, is not a variable: one only
    // the recording had would move the program's stack. The exec shim reads kUpstreamFile.)
  }
  // Bytecode caches are the interpreter's, not the program's: they must not become file writes.
  env["PYTHONDONTWRITEBYTECODE"] = "1";
  std::vector<std::string> out;
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

void without_preload(std::vector<std::string>& env, const fs::path& library) {
  const std::string ours = fs::absolute(library).string();
  for (std::string& entry : env) {
    if (!entry.starts_with("LD_PRELOAD=")) continue;
    std::string kept;
    std::istringstream parts(entry.substr(11));
    for (std::string part; std::getline(parts, part, ':');) {
      if (part.empty() || part == ours) continue;
      kept += (kept.empty() ? "" : ":") + part;
    }
    entry = "LD_PRELOAD=" + kept;
  }
  std::erase(env, "LD_PRELOAD=");
}

namespace {

// The warnings for a run whose /tmp, or a replay whose home, is the host's.
std::string temp_is_shared(const std::string& why) {
  return "/tmp is the host's, not the run's own (" + why +
         "): temporary files left there stay, and a replay finds the recording's in the way";
}
std::string home_is_shared(const std::string& home, const std::string& why) {
  return "the home folder " + home + " is the host's in this replay (" + why +
         "): what the program writes there reaches it";
}

// The run's own /tmp and a replay's own home (private_world.hpp), as far as this run can have
// them: a warning for each it cannot. A recording without root runs in no mount namespace: a
// user namespace for it alone would show every file the user does not own as nobody's (ssh
// refuses such a config). A recording writes the real home, as it writes the workspace.
struct PrivateWorld {
  std::optional<PrivateLayer> temp;
  std::optional<PrivateLayer> home;
  std::string home_path;
};
PrivateWorld private_world(bool replay, const WorkspaceView& view,
                           const std::vector<std::string>& env, const fs::path& run_dir,
                           const std::vector<HomeFileFound>& home_found, RunOutcome& outcome) {
  PrivateWorld world;
  if (!replay && ::geteuid() != 0) {
    outcome.warnings.push_back(temp_is_shared("a recording's mount namespace needs root"));
    return world;
  }
  std::vector<fs::path> also_kept;
  if (const char* trace = std::getenv("TAPEDECK_TRACE"); trace != nullptr && *trace != '\0') {
    also_kept.push_back(fs::path(trace).parent_path());
  }
  std::string why;
  world.temp = temp_layer(run_dir, view.workspace(), also_kept, why);
  if (!world.temp) outcome.warnings.push_back(temp_is_shared(why));
  for (const std::string& entry : env) {
    if (entry.starts_with("HOME=")) world.home_path = entry.substr(5);
  }
  if (replay && !world.home_path.empty()) {
    why.clear();
    world.home = home_layer(world.home_path, run_dir, view.workspace(), why);
    if (!world.home && !why.empty())
      outcome.warnings.push_back(home_is_shared(world.home_path, why));
    if (world.home) {
      why.clear();
      seed_home(*world.home, run_dir, home_found, why);
      if (!why.empty()) outcome.warnings.push_back(why);
    }
  }
  return world;
}

}  // namespace

PreparedRoot prepare_root(const RunOptions& options, WorkspaceView& view, const fs::path& program,
                          const std::vector<std::string>& env, const floor::Filter* filter,
                          RunOutcome& outcome, bool& floored, const RootExtras& extras) {
  const bool replay = options.mode == RunOptions::Mode::replay;
  bool overlay = replay && options.isolation != Isolation::copy;
  bool with_floor = filter != nullptr;
  bool pid_namespace = ::geteuid() == 0;
  PrivateWorld world = private_world(replay, view, env, extras.run_dir, extras.home_seeds, outcome);
  if (!pid_namespace && replay) {
    outcome.warnings.push_back(
        "process ids are the host's (a pid namespace for the program needs root): what the "
        "program derives from its pid can differ from the recording");
  }
  std::vector<char*> argv;
  for (const std::string& arg : options.command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const fs::path cwd = fs::current_path();
  while (true) {
    RootSetupFailure failure;
    std::optional<WorkspaceView::Layer> layer;
    if (overlay) layer = view.namespace_layer(failure.why);
    if (replay && !overlay && view.kind() != Isolation::copy) view.make_copy();
    // A copy's replay has no namespace to hold a private /tmp or home.
    if (replay && !overlay) {
      const std::string why = "the replay runs in a copy, without a namespace";
      if (world.temp) outcome.warnings.push_back(temp_is_shared(why));
      if (world.home) outcome.warnings.push_back(home_is_shared(world.home_path, why));
      world.temp.reset();
      world.home.reset();
    }
    if (!overlay || layer) {
      // The program's environment for this attempt: the floor's and the copy's entries added.
      std::vector<std::string> entries = env;
      // The root's parent, by which the preload knows the root (its exec continues it).
      entries.push_back("TAPEDECK_ROOT_PARENT_PID=" +
                        (pid_namespace ? std::string("1") : std::to_string(::getpid())));
      if (with_floor) entries.push_back("TAPEDECK_FLOOR=1");
      if (world.temp) point_temp_at_private(entries, view.workspace());
      if (view.kind() == Isolation::copy) {
        entries.push_back("TAPEDECK_VIEW=" + view.copy_root().string());
        for (std::string& entry : entries) {
          if (entry.starts_with("PWD=")) entry = "PWD=" + view.translate(cwd).string();
        }
      }
      std::vector<char*> envp;
      for (std::string& entry : entries) envp.push_back(entry.data());
      envp.push_back(nullptr);
      RootPlan plan;
      plan.program = program.c_str();
      plan.argv = argv.data();
      plan.envp = envp.data();
      plan.cwd = view.translate(cwd).string();
      plan.overlay = overlay;
      plan.workspace = view.workspace().string();
      if (layer) {
        plan.overlay_options = layer->overlay_options;
        plan.overlay_fallback = layer->overlay_fallback;
        plan.bind_source = layer->bind_source;
      }
      plan.temp = world.temp ? &*world.temp : nullptr;
      plan.home = world.home ? &*world.home : nullptr;
      plan.floor = with_floor ? filter : nullptr;
      plan.stdout_fd = extras.stdout_fd;
      plan.stderr_fd = extras.stderr_fd;
      plan.exec_stop = extras.exec_stop;
      plan.pid_namespace = pid_namespace;
      if (std::optional<PreparedRoot> root = PreparedRoot::prepare(plan, failure)) {
        if (overlay) view.adopt_namespace(root->take_view(), root->setup_ms());
        floored = with_floor;
        return std::move(*root);
      }
    }
    if (failure.step == RootSetupFailure::Step::temp) {
      outcome.warnings.push_back(temp_is_shared(failure.why));
      world.temp.reset();
      continue;
    }
    if (failure.step == RootSetupFailure::Step::home) {
      outcome.warnings.push_back(home_is_shared(world.home_path, failure.why));
      world.home.reset();
      continue;
    }
    if (failure.step == RootSetupFailure::Step::pid_namespace) {
      outcome.warnings.push_back("no pid namespace for the program (" + failure.why +
                                 "): its process ids are the host's, and differ from run to run");
      pid_namespace = false;
      continue;
    }
    if (failure.step == RootSetupFailure::Step::overlay && !overlay) {
      // Nothing was asked of the kernel but a chdir: nothing to fall back from.
      throw std::runtime_error("cannot start " + program.string() + ": " + failure.why);
    }
    if (failure.step == RootSetupFailure::Step::overlay) {
      if (options.isolation == Isolation::kernel_overlay) {
        throw std::runtime_error(
            "--isolation namespace: the kernel refused a private view of the workspace (" +
            failure.why + ")");
      }
      outcome.warnings.push_back("no mount namespace for the replay (" + failure.why +
                                 "): replaying in a copy of the workspace instead; programs the "
                                 "preload library does not reach see the real workspace");
      overlay = false;
      continue;
    }
    if (replay) {
      throw std::runtime_error("the system-call floor could not be installed (" + failure.why +
                               "): a replay without it could let a program reach what the tape "
                               "should serve, so it does not start");
    }
    outcome.warnings.push_back("the system-call floor could not be installed (" + failure.why +
                               "): only the preload library's hooks hold, and programs it does "
                               "not reach are not policed");
    with_floor = false;
  }
}

namespace {

using floor::read_at;

// Whether the ELF file open on `fd` names a section Go's linker writes into every binary since
// Go 1.13, cgo-linked or not, stripped or not (.go.buildinfo; .note.go.buildid). Only the section
// headers and their names are read: a program can be 100 MB (node), and this runs per run.
bool has_go_sections(int fd, const Elf64_Ehdr& header) {
  if (header.e_shnum == 0 || header.e_shentsize != sizeof(Elf64_Shdr) ||
      header.e_shstrndx >= header.e_shnum || header.e_shnum > 4096) {
    return false;
  }
  std::vector<Elf64_Shdr> sections(header.e_shnum);
  if (!read_at(fd, sections.data(), sections.size() * sizeof(Elf64_Shdr), header.e_shoff)) {
    return false;
  }
  const Elf64_Shdr& names_section = sections[header.e_shstrndx];
  if (names_section.sh_size > (1u << 20)) return false;
  std::string names(names_section.sh_size, '\0');
  if (!read_at(fd, names.data(), names.size(), names_section.sh_offset)) return false;
  for (const Elf64_Shdr& section : sections) {
    if (section.sh_name >= names.size()) continue;
    const std::string_view name(names.c_str() + section.sh_name);
    if (name == ".go.buildinfo" || name == ".note.go.buildid") return true;
  }
  return false;
}

// linkage_of, `depth` interpreters down.
Linkage linkage_at_depth(const fs::path& program, int depth) {
  const int fd = ::open(program.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Linkage::glibc_dynamic;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // A script: what matters is its interpreter (the kernel reads at most this much of the line).
  char start[256] = {};
  const ssize_t got = ::pread(fd, start, sizeof start, 0);
  if (got >= 2 && start[0] == '#' && start[1] == '!') {
    const std::string_view line(start + 2, static_cast<size_t>(got) - 2);
    std::istringstream words(std::string(line.substr(0, line.find('\n'))));
    std::string interpreter;
    words >> interpreter;
    // As the kernel does, interpreters that are scripts are followed a few deep, no further.
    constexpr int kMostInterpreters = 4;
    if (interpreter.empty() || depth >= kMostInterpreters) return Linkage::glibc_dynamic;
    return linkage_at_depth(interpreter, depth + 1);
  }
  Elf64_Ehdr header;
  if (got < static_cast<ssize_t>(sizeof header)) return Linkage::glibc_dynamic;
  std::memcpy(&header, start, sizeof header);
  if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64) {
    return Linkage::glibc_dynamic;
  }
  if (has_go_sections(fd, header)) return Linkage::go;
  if (header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phnum > 4096) {
    return Linkage::glibc_dynamic;
  }
  std::vector<Elf64_Phdr> segments(header.e_phnum);
  if (!read_at(fd, segments.data(), segments.size() * sizeof(Elf64_Phdr), header.e_phoff)) {
    return Linkage::glibc_dynamic;
  }
  for (const Elf64_Phdr& segment : segments) {
    if (segment.p_type == PT_INTERP) return Linkage::glibc_dynamic;
  }
  return Linkage::static_binary;
}

// What the floor makes of a Go program's clock: time.Since is the program's only where
// runtime.nanotime can be patched (go_clock.hpp).
std::string go_clock_warning(bool durations_taped) {
  if (durations_taped) {
    return "Go's runtime reads the clock for itself from several threads: time.Now(), "
           "time.Since and time.Until are taped, the runtime's own reads (its scheduler, timers) "
           "are not";
  }
  return "Go's runtime reads the clock for itself from several threads: time.Now() is taped, the "
         "runtime's reads are not, and this binary gives no way to tell time.Since's from them "
         "(stripped, or a runtime.nanotime of another shape), so durations measured on the "
         "monotonic clock alone (time.Since) follow the replay's own clock";
}

}  // namespace

Linkage linkage_of(const fs::path& program) {
  return linkage_at_depth(program, 0);
}

std::optional<std::string> interposition_warning(const fs::path& program, Linkage linkage,
                                                 bool floor_serves, bool go_durations_taped) {
  if (linkage == Linkage::glibc_dynamic) return std::nullopt;
  const std::string what =
      linkage == Linkage::go
          ? program.string() + " is a Go program: it makes its system calls itself"
          : program.string() + " is statically linked: there is no libc to interpose";
  if (!floor_serves) {
    return what +
           ", so its clock reads, sleeps, file effects and execs are not taped (the system-call "
           "floor still polices its network, and a replay's private view keeps it off the "
           "workspace); only its LLM calls through the proxy are";
  }
  return what +
         ". The system-call floor serves its clock reads, sleeps, randomness, execs and its "
         "workspace reads, writes, deletes and renames; not taped: folders it makes or removes, "
         "links" +
         (linkage == Linkage::go ? ". " + go_clock_warning(go_durations_taped) : std::string());
}

}  // namespace tapedeck::supervisor
