#include "supervisor/supervisor.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "floor/floor.hpp"
#include "supervisor/launch.hpp"
#include "supervisor/output_capture.hpp"
#include "supervisor/run_dir.hpp"
#include "supervisor/tree_effects.hpp"
#include "supervisor/tree_server.hpp"
#include "tapedeck/llm_proxy.hpp"
#include "tapedeck/secrets.hpp"
#include "tapedeck/testbench.hpp"

extern char** environ;

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

namespace {

std::atomic<pid_t> forward_to{0};
std::atomic<int> terminated_by{0};  // SIGTERM or SIGHUP that reached tapedeck, passed on

void forward_signal(int signal_number) {
  terminated_by.store(signal_number);
  const pid_t pid = forward_to.load();
  if (pid > 0) ::kill(pid, signal_number);
}

}  // namespace

RunOutcome run(const RunOptions& options) {
  if (options.command.empty()) throw std::runtime_error("no program to run (after --)");
  const auto started = std::chrono::steady_clock::now();
  RunOutcome outcome;
  const auto program = locate(options.command[0]);
  if (!program) throw std::runtime_error(options.command[0] + ": program not found");
  for (const fs::path& needed : {options.preload_library, options.exec_shim}) {
    if (!fs::exists(needed))
      throw std::runtime_error(needed.string() + ": missing (a broken install?)");
  }
  if (!fs::is_directory(options.workspace)) {
    throw std::runtime_error("--workspace " + options.workspace.string() + ": not a folder");
  }

  RunDir run_dir(fs::weakly_canonical(options.workspace));
  std::unique_ptr<Session> session;
  StreamOptions stream;
  stream.fsync = options.fsync;
  LlmOptions llm;
  llm.timeout = std::chrono::minutes(10);
  std::string mode = "off";
  // Where the LLM proxy may relay: the upstream, when one was given.
  NetworkPolicy network = NetworkPolicy::deny_all();
  if (!options.llm_upstream.empty()) {
    try {
      network.allow(NetworkPolicy::rule_for(options.llm_upstream));
    } catch (const NetworkDenied&) {
      throw std::runtime_error("--llm-upstream " + options.llm_upstream +
                               ": not a URL (scheme://host[:port])");
    }
  }
  if (options.mode == RunOptions::Mode::record) {
    mode = "record";
    session = Testbench::recording(options.tape)
                  .llm(llm)
                  .subprocesses()
                  .network(network)
                  .describe(options.command[0], options.command)
                  .stream(stream)
                  .start();
  } else if (options.mode == RunOptions::Mode::replay) {
    mode = "replay";
    if (options.record_misses) llm.on_miss = LlmOptions::OnMiss::record;
    auto bench = Testbench::replaying(options.tape, options.emit).llm(llm).subprocesses();
    if (options.record_misses) {
      bench.network(network).describe(options.command[0], options.command);  // a new recording
    }
    if (options.emit) bench.stream(stream);
    session = bench.start();
  }

  // The credential rules compile while the program runs: the run's end scans its output.
  std::jthread rules_ready;  // joined however this function ends
  if (session) rules_ready = std::jthread(secrets::prepare);
  if (session) {
    // The program's credentials never reach the tape, whatever output carries them.
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string_view text(*entry);
      const size_t equals = text.find('=');
      const std::string_view name = text.substr(0, equals);
      for (std::string_view marker : {"API_KEY", "TOKEN", "SECRET", "PASSWORD", "ACCESS_KEY"}) {
        if (equals != std::string_view::npos && name.find(marker) != std::string_view::npos) {
          session->recorder().add_secret(std::string(text.substr(equals + 1)));
        }
      }
    }
  }
  WorkspaceView view(fs::weakly_canonical(options.workspace), run_dir.path() / "view");
  TreeServer server((run_dir.path() / "s").string());
  TreeEffects effects(options, session.get(), server, view, run_dir.path());
  server.set_handler([&effects](const Connection& connection, wire::Op op, std::string_view body) {
    effects.handle(connection, op, body);
  });
  server.also_poll(effects.watch().fd(), [&effects] { effects.watch().drain(); });
  std::string seed_why;  // (a tape with no entropy record: its replay draws a fresh seed)
  const std::string seed = session ? entropy_seed(session->recorded_tape(), seed_why) : "";
  std::unique_ptr<LlmProxy> proxy;
  if (session) {
    const std::string upstream = options.llm_upstream.empty()
                                     ? "http://no-llm-upstream-given.invalid"
                                     : options.llm_upstream;
    LlmProxy::Hooks hooks;
    hooks.on_replay_miss = [&server](const ReplayMiss& miss) {
      server.stop_tree(
          std::string("the program called the LLM with a request the tape does not hold: ") +
              miss.what(),
          miss.wanted, miss.recorded);
    };
    hooks.preferred_ports = proxy_ports(seed);
    hooks.on_call_served = [&effects] { effects.llm_call_served(); };
    hooks.before_stream_end = [&effects] { effects.before_stream_end(); };
    hooks.on_call_started = [&effects] { effects.llm_call_started(); };
    hooks.on_call_finished = [&effects] { effects.llm_call_finished(); };
    if (!options.faults.empty() && session->recorded_tape() != nullptr) {
      std::vector<std::string> digests;  // llm#N is the recording's N-th call
      for (const Record& record : session->recorded_tape()->records) {
        if (const auto* call = std::get_if<kind::LlmCall>(&record.kind)) {
          digests.push_back(call->request_digest);
        }
      }
      auto faults = std::make_shared<LlmFaults>(options.faults, std::move(digests));
      auto faults_mutex = std::make_shared<std::mutex>();
      hooks.fault_for = [faults, faults_mutex](const std::string& digest) {
        std::lock_guard lock(*faults_mutex);
        return faults->take(digest);
      };
      hooks.on_fault_injected = [&effects](const Fault&) { effects.fault_injected(); };
      hooks.pass_time = [&effects](uint64_t ms) { effects.pass_time(ms); };
    }
    proxy = std::make_unique<LlmProxy>(*session, upstream, std::move(hooks));
  }
  std::vector<floor::Endpoint> allowed = resolve_endpoints(options.allow, "--allow");
  ProgramLinks links;
  links.mode = mode;
  links.thread_lanes = options.thread_lanes && options.mode == RunOptions::Mode::record;
  links.socket_path = server.socket_path();
  links.workspace = effects.workspace();
  links.clock_map_path = effects.clock_map_path();
  links.proxy_port = proxy ? proxy->port() : 0;
  links.allowed = preload_allow_list(allowed);
  for (const std::string& rule : options.allow) {
    const std::string host = NetworkPolicy::parse(rule).host;  // (parsed once already: valid)
    links.allowed_names += (links.allowed_names.empty() ? "" : ",") + host;
  }
  if (session) {
    links.entropy_seed = seed;
    links.entropy_per_thread = entropy_per_thread(session->recorded_tape());
    if (!seed_why.empty()) outcome.warnings.push_back(seed_why);
    // A tape without one keeps its shape in the replay's (the clock's stretches follow it).
    if (seed_why.empty()) effects.record_entropy_seed(links.entropy_seed, links.entropy_per_thread);
    effects.set_entropy_seed(links.entropy_seed);
  }
  // A root the preload cannot reach has its clock, sleeps, files and execs served by the floor
  // instead; the preload stays out of it (a cgo-linked Go program would load it, and its hooks
  // would tape what the floor tapes too).
  const Linkage linkage = linkage_of(*program);
  const floor::Reach reach =
      session && linkage != Linkage::glibc_dynamic ? floor::Reach::whole : floor::Reach::network;
  const floor::Runtime runtime =
      linkage == Linkage::go ? floor::Runtime::go : floor::Runtime::plain;
  std::vector<std::string> env = program_environment(options, links);
  if (!options.llm_upstream.empty() && links.proxy_port != 0) {
    std::ofstream((run_dir.path() / wire::kUpstreamFile).string()) << options.llm_upstream << '\n';
  }
  if (reach == floor::Reach::whole) without_preload(env, options.preload_library);

  // The floor: built here, installed by the root before it starts, answered by the warden.
  // A test makes a program escape on purpose (TAPEDECK_TEST_FLOOR_HOLE=openat,…): served calls
  // left out of the filter. Never silent: the program and what escapes are named.
  std::set<std::string> holes;
  if (const char* named = std::getenv("TAPEDECK_TEST_FLOOR_HOLE");
      named != nullptr && reach == floor::Reach::whole) {
    std::istringstream list(named);
    for (std::string call; std::getline(list, call, ',');) {
      if (call.empty()) continue;
      if (floor::escapes_through({call}).empty()) {  // a typo must not cost the floor
        throw std::runtime_error("TAPEDECK_TEST_FLOOR_HOLE: " + call +
                                 " is not a call the system-call floor serves");
      }
      holes.insert(call);
    }
  }
  std::optional<floor::Filter> filter;
  try {
    filter.emplace(reach, runtime, holes);
    if (!holes.empty()) {
      std::string calls;
      for (const std::string& call : holes) calls += (calls.empty() ? "" : ", ") + call;
      outcome.warnings.push_back(
          program->string() + " escapes the system-call floor through " + calls +
          " (TAPEDECK_TEST_FLOOR_HOLE): its " + floor::escapes_through(holes) + " are not taped" +
          (options.mode == RunOptions::Mode::replay
               ? ", and happen for real in the replay's private view of the workspace"
               : ""));
    }
  } catch (const std::exception& error) {
    if (options.mode == RunOptions::Mode::replay) throw;
    outcome.warnings.push_back(std::string(error.what()) +
                               ": only the preload library's hooks hold");
  }
  // What the program prints is part of its outcome (taped, so fidelity sees a different ending).
  std::unique_ptr<OutputCapture> capture;
  if (session) capture = std::make_unique<OutputCapture>();
  bool floored = false;
  RootExtras extras;
  if (capture) {
    extras.stdout_fd = capture->program_stdout();
    extras.stderr_fd = capture->program_stderr();
  }
  // What the root's exec stop does, prepared here: it is done in a forked child (ExecStopPlan).
  floor::GoClockSites go_clock;
  if (reach == floor::Reach::whole) {
    const std::string random = effects.startup_random();
    extras.exec_stop.replaces_random = random.size() == extras.exec_stop.startup_random.size();
    if (extras.exec_stop.replaces_random) {
      std::memcpy(extras.exec_stop.startup_random.data(), random.data(), random.size());
    }
    if (runtime == floor::Runtime::go) {
      go_clock = floor::go_clock_sites(program->string());
      extras.exec_stop.go_clock = &go_clock;
    }
  }
  PreparedRoot root = prepare_root(options, view, *program, env, filter ? &*filter : nullptr,
                                   outcome, floored, extras);
  std::unique_ptr<floor::Warden> warden;
  if (floored) {
    floor::NetworkPolicy policy;
    policy.proxy_port = links.proxy_port;
    policy.allowed = allowed;
    for (const floor::Endpoint& nameserver : floor::nameservers()) {
      policy.allowed.push_back(nameserver);
    }
    // A recorded subprocess reaches the upstream itself (its base URLs point there).
    if (options.mode == RunOptions::Mode::record && !options.llm_upstream.empty()) {
      for (const floor::Endpoint& upstream :
           resolve_endpoints({NetworkPolicy::rule_for(options.llm_upstream)}, "--llm-upstream")) {
        policy.allowed.push_back(upstream);
      }
    }
    warden = std::make_unique<floor::Warden>(
        root.take_floor(), std::move(policy), root.pid(),
        [](const std::string& line) { std::fprintf(stderr, "tapedeck: %s\n", line.c_str()); },
        reach == floor::Reach::whole ? &effects : nullptr, runtime);
    server.also_poll(warden->fd(), [&warden] { warden->serve_one(); });
    server.set_ticker([&warden] { return warden->next_tick_ms(); }, [&warden] { warden->tick(); });
  }
  outcome.floor = floored;
  const bool floor_serves = floored && reach == floor::Reach::whole;
  if (auto warning = interposition_warning(*program, linkage, floor_serves, go_clock.patchable())) {
    outcome.warnings.push_back(*warning);
  }

  std::atomic<bool> root_exited{false};
  std::thread serving([&] { server.serve(root_exited, std::chrono::milliseconds(2000)); });
  // Like system(): the terminal's ^C is the program's to handle; SIGTERM is passed on.
  struct sigaction ignore {
  }, previous_int{}, previous_quit{}, forward{}, previous_term{};
  ignore.sa_handler = SIG_IGN;
  forward.sa_handler = forward_signal;
  ::sigaction(SIGINT, &ignore, &previous_int);
  ::sigaction(SIGQUIT, &ignore, &previous_quit);
  struct sigaction previous_hup {};
  ::sigaction(SIGTERM, &forward, &previous_term);
  ::sigaction(SIGHUP, &forward, &previous_hup);
  terminated_by = 0;
  // Once the root is gone (or never started): the tree served out, tapedeck's signals its own.
  auto wind_down = [&] {
    root_exited = true;
    server.wake();
    serving.join();
    if (rules_ready.joinable()) rules_ready.join();
    ::sigaction(SIGINT, &previous_int, nullptr);
    ::sigaction(SIGQUIT, &previous_quit, nullptr);
    ::sigaction(SIGTERM, &previous_term, nullptr);
    ::sigaction(SIGHUP, &previous_hup, nullptr);
    if (proxy) proxy->stop();
  };
  const pid_t pid = root.pid();
  forward_to = pid;
  server.set_root(pid);
  try {
    root.go();
    // With a pid namespace, its init stands for the tree (signals, stopping it).
    forward_to = root.tree_pid();
    server.set_root(root.tree_pid());
    effects.set_pid_namespace(root.tree_pid() != root.pid());
    if (capture) capture->started();
    if (!root.proc_failure().empty()) {
      outcome.warnings.push_back("the program's pid namespace has no /proc of its own (" +
                                 root.proc_failure() +
                                 "): /proc/<its pid> names whichever host process has that pid");
    }
    if (!root.vdso_failure().empty()) {
      outcome.warnings.push_back("the floor could not prepare " + program->string() +
                                 " at its exec: " + root.vdso_failure());
    }
  } catch (...) {
    forward_to = 0;
    wind_down();
    throw;
  }
  const auto program_started = std::chrono::steady_clock::now();
  int status = 0;
  std::optional<int> killed_after;  // the signal that ended the run, when its grace ran out
  // Waited for through a pidfd, a slice at a time: a SIGTERM may be handled on any of
  // tapedeck's threads, so this one looks for it rather than count on an interrupted wait.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  while (true) {
    if (pidfd >= 0) {
      pollfd ended{pidfd, POLLIN, 0};
      ::poll(&ended, 1, 100);
    }
    const pid_t got = ::waitpid(pid, &status, pidfd >= 0 ? WNOHANG : 0);
    if (got == pid || (got < 0 && errno != EINTR)) break;
    const int signal_number = terminated_by.load();
    if (signal_number == 0) continue;
    // A CI job's stop: the program had the signal; it gets --kill-after to end, then its tree
    // is killed (through the namespace's init, all of it), and the tape is finished as usual.
    const auto deadline = std::chrono::steady_clock::now() + options.kill_after;
    pid_t ended = 0;
    while ((ended = ::waitpid(pid, &status, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      ::usleep(20'000);
    }
    if (ended == 0) {
      ::kill(root.tree_pid(), SIGKILL);
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      killed_after = signal_number;
    }
    break;
  }
  if (pidfd >= 0) ::close(pidfd);
  const auto program_ended = std::chrono::steady_clock::now();
  forward_to = 0;
  wind_down();
  if (floor_serves) effects.settle_all();
  outcome.exit_code = exit_code_of(status);
  if (killed_after) {
    // Ended as `timeout` ends what it stops: 128 + the signal that asked.
    outcome.exit_code = 128 + *killed_after;
    char line[160];
    std::snprintf(line, sizeof line,
                  "the program was sent SIG%s and had not ended %.1f s later (--kill-after): its "
                  "whole tree was killed",
                  ::sigabbrev_np(*killed_after),
                  static_cast<double>(options.kill_after.count()) / 1000.0);
    outcome.warnings.push_back(line);
  }
  if (capture) {
    capture->finish(std::chrono::milliseconds(2000));
    effects.record_outcome(outcome.exit_code, capture->stdout_output(), capture->stderr_output());
  }
  outcome.miss = server.miss();
  std::tie(outcome.miss_wanted, outcome.miss_recorded) = server.miss_values();
  if (options.mode == RunOptions::Mode::replay) {
    std::tie(outcome.unused_inputs, outcome.unused_example) = effects.unused_inputs();
    outcome.hollow = !outcome.miss && effects.played_back() > 0 && effects.served_inputs() == 0;
    for (const std::string& note : effects.notes()) outcome.warnings.push_back(note);
    if (outcome.hollow) {
      outcome.warnings.push_back(
          "the replay tested nothing: every input the tree consumed was a subprocess's "
          "played-back result (no LLM answer, data file or sleep was served to a process that "
          "ran, and it changed no workspace file itself), so the program's own code was not "
          "tested: a program that only runs tools, or an agent recorded as a --black-box");
    }
    outcome.isolation = view.kind();
    outcome.isolation_setup_ms = view.setup_ms();
    outcome.view_layer = view.layer();
  }
  if (!effects.watch_warning().empty()) outcome.warnings.push_back(effects.watch_warning());
  if (effects.withheld() > 0) {
    outcome.warnings.push_back(std::to_string(effects.withheld()) +
                               " workspace file(s) or output(s) held a credential (one the "
                               "program was given, or one shaped like a key): the tape keeps them "
                               "redacted, and a replay reads them so");
  }
  if (session) {
    outcome.records = session->recorder().record_count();
    session->finish();
    if (session->late_scrubbed() > 0) {
      outcome.warnings.push_back(
          std::to_string(session->late_scrubbed()) +
          " credential(s) learned during the run (a header the LLM proxy relayed) were on what "
          "had been written before: scrubbed from the tape and its sidecar");
    }
  }
  const auto ended = std::chrono::steady_clock::now();
  outcome.wall = std::chrono::duration_cast<std::chrono::milliseconds>(ended - started);
  using Ms = std::chrono::duration<double, std::milli>;
  outcome.setup_ms = Ms(program_started - started).count();
  outcome.program_ms = Ms(program_ended - program_started).count();
  outcome.finish_ms = Ms(ended - program_ended).count();
  return outcome;
}

}  // namespace tapedeck::supervisor
