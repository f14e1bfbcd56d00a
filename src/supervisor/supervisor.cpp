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

// Like system(): the terminal's ^C is the program's to handle; SIGTERM and SIGHUP are passed on.
class PassedOnSignals {
 public:
  void pass_on() {
    struct sigaction ignore {};
    struct sigaction forward {};
    ignore.sa_handler = SIG_IGN;
    forward.sa_handler = forward_signal;
    ::sigaction(SIGINT, &ignore, &previous_int_);
    ::sigaction(SIGQUIT, &ignore, &previous_quit_);
    ::sigaction(SIGTERM, &forward, &previous_term_);
    ::sigaction(SIGHUP, &forward, &previous_hup_);
    terminated_by = 0;
    passed_on_ = true;
  }
  void restore() {
    if (!std::exchange(passed_on_, false)) return;
    ::sigaction(SIGINT, &previous_int_, nullptr);
    ::sigaction(SIGQUIT, &previous_quit_, nullptr);
    ::sigaction(SIGTERM, &previous_term_, nullptr);
    ::sigaction(SIGHUP, &previous_hup_, nullptr);
  }

 private:
  bool passed_on_ = false;
  struct sigaction previous_int_ {};
  struct sigaction previous_quit_ {};
  struct sigaction previous_term_ {};
  struct sigaction previous_hup_ {};
};

// One run's life, a phase a method; run() below reads as the list of them. Members are declared
// in the order the phases make them, so they are undone in the reverse order, as locals were.
class Run {
 public:
  explicit Run(const RunOptions& options);
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  // A run that threw once its tree was served still winds down (never a joinable thread).
  ~Run() {
    if (!serving_.joinable()) return;
    forward_to = 0;
    wind_down();
  }
  void open_session();
  void serve_tree();
  void start_llm_proxy();
  void link_program();
  void build_floor();
  void prepare_root();
  void post_warden();
  floor::NetworkPolicy floor_policy() const;
  void follow_exec(pid_t pid, const std::string& program, const std::string& key);
  void start_root();
  void wait_for_root();
  void wind_down();
  RunOutcome conclude();

 private:
  bool replaying() const { return options_.mode == RunOptions::Mode::replay; }
  bool recording() const { return options_.mode == RunOptions::Mode::record; }

  const RunOptions& options_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  RunOutcome outcome_;
  fs::path program_;
  std::optional<RunDir> run_dir_;
  std::unique_ptr<Session> session_;
  std::string mode_ = "off";
  NetworkPolicy network_ = NetworkPolicy::deny_all();  // where the LLM proxy may relay
  std::jthread rules_ready_;                           // joined however the run ends
  std::optional<WorkspaceView> view_;
  std::optional<TreeServer> server_;
  std::optional<TreeEffects> effects_;
  std::string seed_why_;  // (a tape with no entropy record: its replay draws a fresh seed)
  std::string seed_;
  std::unique_ptr<LlmProxy> proxy_;
  std::vector<floor::Endpoint> allowed_;
  ProgramLinks links_;
  Linkage linkage_ = Linkage::glibc_dynamic;
  floor::Reach reach_ = floor::Reach::network;
  floor::Runtime runtime_ = floor::Runtime::plain;
  std::vector<std::string> env_;
  std::optional<floor::Filter> filter_;
  std::unique_ptr<OutputCapture> capture_;
  bool floored_ = false;
  RootExtras extras_;
  floor::GoClockSites go_clock_;
  std::optional<PreparedRoot> root_;
  std::unique_ptr<floor::Warden> warden_;
  std::atomic<bool> root_exited_{false};
  std::thread serving_;
  PassedOnSignals signals_;
  std::chrono::steady_clock::time_point program_started_;
  std::chrono::steady_clock::time_point program_ended_;
  int status_ = 0;
  std::optional<int> killed_after_;  // the signal that ended the run, when its grace ran out
};

Run::Run(const RunOptions& options) : options_(options) {
  if (options.command.empty()) throw std::runtime_error("no program to run (after --)");
  const auto program = locate(options.command[0]);
  if (!program) throw std::runtime_error(options.command[0] + ": program not found");
  program_ = *program;
  for (const fs::path& needed : {options.preload_library, options.exec_shim}) {
    if (!fs::exists(needed))
      throw std::runtime_error(needed.string() + ": missing (a broken install?)");
  }
  if (!fs::is_directory(options.workspace)) {
    throw std::runtime_error("--workspace " + options.workspace.string() + ": not a folder");
  }
  run_dir_.emplace(fs::weakly_canonical(options.workspace));
}

// The tape: a recording, a replay (with its own tape when asked), or none for an untaped run.
void Run::open_session() {
  StreamOptions stream;
  stream.fsync = options_.fsync;
  LlmOptions llm;
  llm.timeout = std::chrono::minutes(10);
  if (!options_.llm_upstream.empty()) {
    try {
      network_.allow(NetworkPolicy::rule_for(options_.llm_upstream));
    } catch (const NetworkDenied&) {
      throw std::runtime_error("--llm-upstream " + options_.llm_upstream +
                               ": not a URL (scheme://host[:port])");
    }
  }
  if (recording()) {
    mode_ = "record";
    session_ = Testbench::recording(options_.tape)
                   .llm(llm)
                   .subprocesses()
                   .network(network_)
                   .describe(options_.command[0], options_.command)
                   .stream(stream)
                   .start();
  } else if (replaying()) {
    mode_ = "replay";
    if (options_.record_misses) llm.on_miss = LlmOptions::OnMiss::record;
    auto bench = Testbench::replaying(options_.tape, options_.emit).llm(llm).subprocesses();
    if (options_.record_misses) {
      bench.network(network_).describe(options_.command[0], options_.command);  // a new recording
    }
    if (options_.emit) bench.stream(stream);
    session_ = bench.start();
  }
  if (!session_) return;
  // The credential rules compile while the program runs: the run's end scans its output.
  rules_ready_ = std::jthread(secrets::prepare);
  // The program's credentials never reach the tape, whatever output carries them.
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const size_t equals = text.find('=');
    const std::string_view name = text.substr(0, equals);
    for (std::string_view marker : {"API_KEY", "TOKEN", "SECRET", "PASSWORD", "ACCESS_KEY"}) {
      if (equals != std::string_view::npos && name.find(marker) != std::string_view::npos) {
        session_->recorder().add_secret(std::string(text.substr(equals + 1)));
      }
    }
  }
}

// The workspace's view, and the socket every process of the tree is served on.
void Run::serve_tree() {
  view_.emplace(fs::weakly_canonical(options_.workspace), run_dir_->path() / "view");
  server_.emplace((run_dir_->path() / "s").string());
  effects_.emplace(options_, session_.get(), *server_, *view_, run_dir_->path());
  server_->set_handler([this](const Connection& connection, wire::Op op, std::string_view body) {
    effects_->handle(connection, op, body);
  });
  server_->also_poll(effects_->watch().fd(), [this] { effects_->watch().drain(); });
  if (session_) seed_ = entropy_seed(session_->recorded_tape(), seed_why_);
}

// The LLM proxy the program's model calls go to: relayed and taped, or answered from the tape.
void Run::start_llm_proxy() {
  if (!session_) return;
  const std::string upstream = options_.llm_upstream.empty()
                                   ? "http://no-llm-upstream-given.invalid"
                                   : options_.llm_upstream;
  TreeServer& server = *server_;
  TreeEffects& effects = *effects_;
  LlmProxy::Hooks hooks;
  hooks.on_replay_miss = [&server](const ReplayMiss& miss) {
    server.stop_tree(
        std::string("the program called the LLM with a request the tape does not hold: ") +
            miss.what(),
        miss.wanted, miss.recorded);
  };
  hooks.preferred_ports = proxy_ports(seed_);
  hooks.on_call_served = [&effects] { effects.llm_call_served(); };
  hooks.before_stream_end = [&effects] { effects.before_stream_end(); };
  hooks.on_call_started = [&effects] { effects.llm_call_started(); };
  hooks.on_call_finished = [&effects] { effects.llm_call_finished(); };
  if (!options_.faults.empty() && session_->recorded_tape() != nullptr) {
    std::vector<std::string> digests;  // llm#N is the recording's N-th call
    for (const Record& record : session_->recorded_tape()->records) {
      if (const auto* call = std::get_if<kind::LlmCall>(&record.kind)) {
        digests.push_back(call->request_digest);
      }
    }
    auto faults = std::make_shared<LlmFaults>(options_.faults, std::move(digests));
    auto faults_mutex = std::make_shared<std::mutex>();
    hooks.fault_for = [faults, faults_mutex](const std::string& digest) {
      std::lock_guard lock(*faults_mutex);
      return faults->take(digest);
    };
    hooks.on_fault_injected = [&effects](const Fault&) { effects.fault_injected(); };
    hooks.pass_time = [&effects](uint64_t ms) { effects.pass_time(ms); };
  }
  proxy_ = std::make_unique<LlmProxy>(*session_, upstream, std::move(hooks));
}

// What the program is told (the environment its preload reads) and how far the floor reaches.
void Run::link_program() {
  allowed_ = resolve_endpoints(options_.allow, "--allow");
  links_.mode = mode_;
  links_.thread_lanes = options_.thread_lanes && recording();
  links_.socket_path = server_->socket_path();
  links_.workspace = effects_->workspace();
  if (session_) {
    if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
      effects_->use_home(home);
      links_.home = effects_->home();
    }
  }
  links_.clock_map_path = effects_->clock_map_path();
  links_.proxy_port = proxy_ ? proxy_->port() : 0;
  links_.allowed = preload_allow_list(allowed_);
  for (const std::string& rule : options_.allow) {
    const std::string host = NetworkPolicy::parse(rule).host;  // (parsed once already: valid)
    links_.allowed_names += (links_.allowed_names.empty() ? "" : ",") + host;
  }
  if (session_) {
    links_.entropy_seed = seed_;
    links_.entropy_per_thread = entropy_per_thread(session_->recorded_tape());
    if (!seed_why_.empty()) outcome_.warnings.push_back(seed_why_);
    // A tape without one keeps its shape in the replay's (the clock's stretches follow it).
    if (seed_why_.empty()) {
      effects_->record_entropy_seed(links_.entropy_seed, links_.entropy_per_thread);
    }
    effects_->set_entropy_seed(links_.entropy_seed);
    effects_->set_entropy_per_thread(links_.entropy_per_thread);
  }
  // A root the preload cannot reach has its clock, sleeps, files and execs served by the floor
  // instead; the preload stays out of it (a cgo-linked Go program would load it, and its hooks
  // would tape what the floor tapes too).
  linkage_ = linkage_of(program_);
  reach_ =
      session_ && linkage_ != Linkage::glibc_dynamic ? floor::Reach::whole : floor::Reach::network;
  runtime_ = linkage_ == Linkage::go ? floor::Runtime::go : floor::Runtime::plain;
  env_ = program_environment(options_, links_);
  if (!options_.llm_upstream.empty() && links_.proxy_port != 0) {
    std::ofstream((run_dir_->path() / wire::kUpstreamFile).string())
        << options_.llm_upstream << '\n';
  }
  if (reach_ == floor::Reach::whole) without_preload(env_, options_.preload_library);
}

// The floor: built here, installed by the root before it starts, answered by the warden.
// A test makes a program escape on purpose (TAPEDECK_TEST_FLOOR_HOLE=openat,…): served calls
// left out of the filter. Never silent: the program and what escapes are named.
void Run::build_floor() {
  std::set<std::string> holes;
  if (const char* named = std::getenv("TAPEDECK_TEST_FLOOR_HOLE");
      named != nullptr && reach_ == floor::Reach::whole) {
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
  try {
    filter_.emplace(reach_, runtime_, holes);
    if (!holes.empty()) {
      std::string calls;
      for (const std::string& call : holes) calls += (calls.empty() ? "" : ", ") + call;
      outcome_.warnings.push_back(
          program_.string() + " escapes the system-call floor through " + calls +
          " (TAPEDECK_TEST_FLOOR_HOLE): its " + floor::escapes_through(holes) + " are not taped" +
          (replaying() ? ", and happen for real in the replay's private view of the workspace"
                       : ""));
    }
  } catch (const std::exception& error) {
    if (replaying()) throw;
    outcome_.warnings.push_back(std::string(error.what()) +
                                ": only the preload library's hooks hold");
  }
}

// The root forked and set up (view, namespaces, floor), waiting for start_root().
void Run::prepare_root() {
  // What the program prints is part of its outcome (taped, so fidelity sees a different ending).
  if (session_) {
    capture_ = std::make_unique<OutputCapture>();
    extras_.stdout_fd = capture_->program_stdout();
    extras_.stderr_fd = capture_->program_stderr();
  }
  extras_.run_dir = run_dir_->path();
  if (replaying()) extras_.home_seeds = effects_->home_seeds();
  // What the root's exec stop does, prepared here: it is done in a forked child (ExecStopPlan).
  if (reach_ == floor::Reach::whole) {
    const std::string random = effects_->startup_random();
    extras_.exec_stop.replaces_random = random.size() == extras_.exec_stop.startup_random.size();
    if (extras_.exec_stop.replaces_random) {
      std::memcpy(extras_.exec_stop.startup_random.data(), random.data(), random.size());
    }
    if (runtime_ == floor::Runtime::go) {
      go_clock_ = floor::go_clock_sites(program_.string());
      extras_.exec_stop.go_clock = &go_clock_;
    }
  }
  root_.emplace(supervisor::prepare_root(options_, *view_, program_, env_,
                                         filter_ ? &*filter_ : nullptr, outcome_, floored_,
                                         extras_));
  if (const int temp = root_->take_temp(); temp >= 0) {
    effects_->use_private_temp(temp);
  }
  // The workspace's files the recording changed, as it found them, before the program starts.
  if (replaying()) effects_->seed_workspace();
}

// A static program that process `pid` of the preloaded tree execs in place of itself
// (TreeEffects::exec_in_place): the floor serves it as it serves a static root, its randomness
// drawn under the process's stream key. On the serving thread.
void Run::follow_exec(pid_t pid, const std::string& program, const std::string& key) {
  floor::ExecStopPlan plan;
  const std::string random = effects_->startup_random(effects_->name_entropy_stream(pid, key));
  plan.replaces_random = random.size() == plan.startup_random.size();
  if (plan.replaces_random) std::memcpy(plan.startup_random.data(), random.data(), random.size());
  warden_->follow_exec(pid, plan, program);
}

// Where the floor lets the tree connect.
floor::NetworkPolicy Run::floor_policy() const {
  floor::NetworkPolicy policy;
  policy.proxy_port = links_.proxy_port;
  policy.allowed = allowed_;
  for (const floor::Endpoint& nameserver : floor::nameservers()) {
    policy.allowed.push_back(nameserver);
  }
  // A recorded subprocess reaches the upstream itself (its base URLs point there).
  if (recording() && !options_.llm_upstream.empty()) {
    for (const floor::Endpoint& upstream :
         resolve_endpoints({NetworkPolicy::rule_for(options_.llm_upstream)}, "--llm-upstream")) {
      policy.allowed.push_back(upstream);
    }
  }
  return policy;
}

// The warden answers the floor's notifications on the tree server's loop.
void Run::post_warden() {
  outcome_.floor = floored_;
  if (floored_) {
    auto report = [](const std::string& line) {
      std::fprintf(stderr, "tapedeck: %s\n", line.c_str());
    };
    // With a preloaded root, the floor's whole reach is for the static programs it follows.
    const bool follows = session_ && reach_ == floor::Reach::network;
    warden_ = std::make_unique<floor::Warden>(
        root_->take_floor(), floor_policy(), root_->pid(), report,
        reach_ == floor::Reach::whole || follows ? &*effects_ : nullptr, runtime_);
    server_->also_poll(warden_->fd(), [this] { warden_->serve_one(); });
    server_->set_ticker([this] { return warden_->next_tick_ms(); }, [this] { warden_->tick(); });
    if (follows) {
      warden_->serve_followed_only();
      effects_->follow_execs_with(
          [this](pid_t pid, const std::string& program, const std::string& key) {
            follow_exec(pid, program, key);
          });
    }
  }
  const bool floor_serves = floored_ && reach_ == floor::Reach::whole;
  if (auto warning =
          interposition_warning(program_, linkage_, floor_serves, go_clock_.patchable())) {
    outcome_.warnings.push_back(*warning);
  }
}

// The tree served from here on, tapedeck's signals passed on, the root let go.
void Run::start_root() {
  serving_ = std::thread([this] { server_->serve(root_exited_, std::chrono::milliseconds(2000)); });
  signals_.pass_on();
  forward_to = root_->pid();
  server_->set_root(root_->pid());
  try {
    root_->go();
    // With a pid namespace, its init stands for the tree (signals, stopping it).
    forward_to = root_->tree_pid();
    server_->set_root(root_->tree_pid());
    effects_->set_pid_namespace(root_->tree_pid() != root_->pid());
    if (capture_) capture_->started();
    if (!root_->proc_failure().empty()) {
      outcome_.warnings.push_back("the program's pid namespace has no /proc of its own (" +
                                  root_->proc_failure() +
                                  "): /proc/<its pid> names whichever host process has that pid");
    }
    if (!root_->vdso_failure().empty()) {
      outcome_.warnings.push_back("the floor could not prepare " + program_.string() +
                                  " at its exec: " + root_->vdso_failure());
    }
  } catch (...) {
    forward_to = 0;
    wind_down();
    throw;
  }
  program_started_ = std::chrono::steady_clock::now();
}

// Waited for through a pidfd, a slice at a time: a SIGTERM may be handled on any of tapedeck's
// threads, so this one looks for it rather than count on an interrupted wait.
void Run::wait_for_root() {
  const pid_t pid = root_->pid();
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  while (true) {
    if (pidfd >= 0) {
      pollfd ended{pidfd, POLLIN, 0};
      ::poll(&ended, 1, 100);
    }
    const pid_t got = ::waitpid(pid, &status_, pidfd >= 0 ? WNOHANG : 0);
    if (got == pid || (got < 0 && errno != EINTR)) break;
    const int signal_number = terminated_by.load();
    if (signal_number == 0) continue;
    // A CI job's stop: the program had the signal; it gets --kill-after to end, then its tree
    // is killed (through the namespace's init, all of it), and the tape is finished as usual.
    const auto deadline = std::chrono::steady_clock::now() + options_.kill_after;
    pid_t ended = 0;
    while ((ended = ::waitpid(pid, &status_, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      ::usleep(20'000);
    }
    if (ended == 0) {
      ::kill(root_->tree_pid(), SIGKILL);
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status_, 0) < 0 && errno == EINTR) {
      }
      killed_after_ = signal_number;
    }
    break;
  }
  if (pidfd >= 0) ::close(pidfd);
  program_ended_ = std::chrono::steady_clock::now();
  forward_to = 0;
}

// Once the root is gone (or never started): the tree served out, tapedeck's signals its own.
void Run::wind_down() {
  root_exited_ = true;
  server_->wake();
  serving_.join();
  if (rules_ready_.joinable()) rules_ready_.join();
  signals_.restore();
  if (proxy_) proxy_->stop();
}

// The outcome: the exit, what was printed (taped), what the replay met, the tape finished.
RunOutcome Run::conclude() {
  const bool followed = warden_ && !warden_->followed().empty();
  if ((floored_ && reach_ == floor::Reach::whole) || followed) effects_->settle_all();
  outcome_.exit_code = exit_code_of(status_);
  if (killed_after_) {
    // Ended as `timeout` ends what it stops: 128 + the signal that asked.
    outcome_.exit_code = 128 + *killed_after_;
    char line[160];
    std::snprintf(line, sizeof line,
                  "the program was sent SIG%s and had not ended %.1f s later (--kill-after): its "
                  "whole tree was killed",
                  ::sigabbrev_np(*killed_after_),
                  static_cast<double>(options_.kill_after.count()) / 1000.0);
    outcome_.warnings.push_back(line);
  }
  if (capture_) {
    capture_->finish(std::chrono::milliseconds(2000));
    effects_->record_outcome(outcome_.exit_code, capture_->stdout_output(),
                             capture_->stderr_output());
  }
  outcome_.miss = server_->miss();
  std::tie(outcome_.miss_wanted, outcome_.miss_recorded) = server_->miss_values();
  if (replaying()) {
    std::tie(outcome_.unused_inputs, outcome_.unused_example) = effects_->unused_inputs();
    outcome_.hollow =
        !outcome_.miss && effects_->played_back() > 0 && effects_->served_inputs() == 0;
    for (const std::string& note : effects_->notes()) outcome_.warnings.push_back(note);
    if (outcome_.hollow) {
      outcome_.warnings.push_back(
          "the replay tested nothing: every input the tree consumed was a subprocess's "
          "played-back result (no LLM answer, data file or sleep was served to a process that "
          "ran, and it changed no workspace file itself), so the program's own code was not "
          "tested: a program that only runs tools, or an agent recorded as a --black-box");
    }
    outcome_.isolation = view_->kind();
    outcome_.isolation_setup_ms = view_->setup_ms();
    outcome_.view_layer = view_->layer();
  }
  for (const std::string& unserved : effects_->unserved_execs())
    outcome_.warnings.push_back(unserved);
  if (warden_) {
    for (const std::string& program : warden_->followed()) {
      if (auto line = interposition_warning(program, Linkage::static_binary, true, false)) {
        outcome_.warnings.push_back(*line +
                                    ". It was exec'd in place of a process the preload served, "
                                    "and the floor followed it");
      }
    }
    for (const std::string& line : warden_->not_followed()) outcome_.warnings.push_back(line);
  }
  if (!effects_->watch_warning().empty()) outcome_.warnings.push_back(effects_->watch_warning());
  if (!effects_->temp_warning().empty()) outcome_.warnings.push_back(effects_->temp_warning());
  if (effects_->withheld() > 0) {
    outcome_.warnings.push_back(std::to_string(effects_->withheld()) +
                                " workspace file(s) or output(s) held a credential (one the "
                                "program was given, or one shaped like a key): the tape keeps "
                                "them redacted, and a replay reads them so");
  }
  if (session_) {
    outcome_.records = session_->recorder().record_count();
    session_->finish();
    if (session_->late_scrubbed() > 0) {
      outcome_.warnings.push_back(
          std::to_string(session_->late_scrubbed()) +
          " credential(s) learned during the run (a header the LLM proxy relayed) were on what "
          "had been written before: scrubbed from the tape and its sidecar");
    }
  }
  const auto ended = std::chrono::steady_clock::now();
  outcome_.wall = std::chrono::duration_cast<std::chrono::milliseconds>(ended - started_);
  using Ms = std::chrono::duration<double, std::milli>;
  outcome_.setup_ms = Ms(program_started_ - started_).count();
  outcome_.program_ms = Ms(program_ended_ - program_started_).count();
  outcome_.finish_ms = Ms(ended - program_ended_).count();
  return std::move(outcome_);
}

}  // namespace

RunOutcome run(const RunOptions& options) {
  Run run(options);
  run.open_session();
  run.serve_tree();
  run.start_llm_proxy();
  run.link_program();
  run.build_floor();
  run.prepare_root();
  run.post_warden();
  run.start_root();
  run.wait_for_root();
  run.wind_down();
  return run.conclude();
}

}  // namespace tapedeck::supervisor
