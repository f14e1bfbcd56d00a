// `check`'s engine: each tape replayed by its own `tapedeck replay` process, then judged.
#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include "tape/atomic_file.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/suite.hpp"

extern char** environ;

namespace tapedeck::suite {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string_view to_string(CaseResult::Status status) {
  switch (status) {
    case CaseResult::Status::passed:
      return "passed";
    case CaseResult::Status::diverged:
      return "diverged";
    case CaseResult::Status::stopped:
      return "stopped";
    case CaseResult::Status::timed_out:
      return "timed_out";
    case CaseResult::Status::error:
      return "error";
    case CaseResult::Status::untested:
      return "untested";
  }
  return "error";
}

namespace {

constexpr size_t kOutputTail = 4096;  // of the program's output, kept for the report

std::string tail_of(const fs::path& path, size_t keep) {
  std::string text;
  if (!detail::read_file(path, text)) return {};
  return text.size() > keep ? "…" + text.substr(text.size() - keep) : text;
}

// What `tapedeck replay --json` said of itself: its last stderr line that is its summary.
struct ReplaySummary {
  bool found = false;
  std::optional<std::string> miss;
  bool hollow = false;             // it tested nothing (RunOutcome::hollow)
  std::vector<std::string> notes;  // its warnings that are notes: a data file changed since
  std::string last_line;           // the last other line: tapedeck's own error, when it failed
};

ReplaySummary read_summary(const fs::path& stderr_path) {
  ReplaySummary summary;
  std::string text;
  if (!detail::read_file(stderr_path, text)) return summary;
  std::vector<std::string_view> lines;
  for (size_t at = 0; at < text.size();) {
    const size_t end = std::min(text.find('\n', at), text.size());
    if (end > at) lines.emplace_back(text.data() + at, end - at);
    at = end + 1;
  }
  for (auto line = lines.rbegin(); line != lines.rend(); ++line) {
    if (line->starts_with(R"({"command":"replay")")) {
      simdjson::dom::parser parser;
      simdjson::dom::element root;
      if (parser.parse(line->data(), line->size()).get(root) != simdjson::SUCCESS) continue;
      summary.found = true;
      std::string_view miss;
      if (root["miss"].get(miss) == simdjson::SUCCESS) summary.miss = std::string(miss);
      bool hollow = false;
      if (root["hollow"].get(hollow) == simdjson::SUCCESS) summary.hollow = hollow;
      simdjson::dom::array warnings;
      if (root["warnings"].get(warnings) == simdjson::SUCCESS) {
        for (simdjson::dom::element warning : warnings) {
          std::string_view said;
          if (warning.get(said) == simdjson::SUCCESS &&
              said.starts_with("data changed since the recording")) {
            summary.notes.emplace_back(said);
          }
        }
      }
      return summary;
    }
    if (summary.last_line.empty()) summary.last_line = std::string(*line);
  }
  return summary;
}

// Whether the process behind `pidfd` ended within `limit`.
bool ended_within(int pidfd, std::chrono::milliseconds limit) {
  pollfd ready{pidfd, POLLIN, 0};
  const auto deadline = Clock::now() + limit;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    const int n = ::poll(&ready, 1, static_cast<int>(std::min<int64_t>(left.count(), 60'000)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // cannot watch: let waitpid block
  }
}

// The replay's exit status, or nullopt when it outlived `timeout`. Then it is asked to stop
// (SIGTERM, which it passes to the program; its --kill-after, shorter than the grace here,
// kills the tree and finishes the tape), and after a grace period it and its whole process
// group are killed. Either way it is reaped.
std::optional<int> wait_with_timeout(pid_t pid, std::chrono::seconds timeout) {
  constexpr std::chrono::seconds kGrace{3};
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool timed_out = false;
  if (pidfd >= 0) {
    if (!ended_within(pidfd, timeout)) {
      timed_out = true;
      ::kill(pid, SIGTERM);
      if (!ended_within(pidfd, kGrace)) ::kill(-pid, SIGKILL);
    }
    ::close(pidfd);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return std::nullopt;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

pid_t spawn_replay(const std::vector<std::string>& args, const fs::path& cwd, const fs::path& out,
                   const fs::path& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // A process group of its own: a timeout kills the replay and everything it started.
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int error =
      ::posix_spawn(&pid, args[0].c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    throw TapeError(args[0], 0, std::string("cannot start a replay: ") + std::strerror(error));
  }
  return pid;
}

std::string first_divergence(const fidelity::Report& report) {
  const fidelity::Divergence& first = report.divergences.front();
  // Most messages open with their category already.
  const std::string what = first.message.starts_with(first.category)
                               ? first.message
                               : first.category + ": " + first.message;
  return fmt::format("first divergence at seq {}: {}{}", first.seq, what,
                     report.divergences.size() > 1
                         ? fmt::format(" (and {} more)", report.divergences.size() - 1)
                         : "");
}

// Fidelity's notes that the program's code changed between the recording and a replay that
// stopped part way (its tape holds what it did until then); none when it cannot be read.
std::vector<std::string> code_notes(const fs::path& recorded_tape, const fs::path& replay_tape) {
  try {
    auto recorded = TapeReader::open(recorded_tape);
    auto replay = TapeReader::open(replay_tape);
    return fidelity::compare(*recorded, *replay, fidelity::Mode::semantic).notes;
  } catch (const TapeError&) {
    return {};
  }
}

CaseResult run_case(size_t index, const fs::path& tape, const CheckOptions& options) {
  CaseResult result;
  result.tape = tape;
  const auto started = Clock::now();
  auto finish = [&] {
    result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    return result;
  };
  Manifest manifest;
  try {
    manifest = read_manifest(tape);
  } catch (const TapeError& error) {
    result.message = error.what();
    return finish();
  }
  const fidelity::Mode mode =
      options.mode_overrides_manifest ? options.mode : manifest.mode.value_or(options.mode);
  result.mode = fidelity::to_string(mode);

  const std::string stem = fmt::format("{:04}-{}", index + 1, tape.stem().string());
  result.replay_tape = options.replays_dir / (stem + ".replay.tape");
  const fs::path out = options.replays_dir / (stem + ".stdout");
  const fs::path err = options.replays_dir / (stem + ".stderr");
  std::vector<std::string> args = {options.tapedeck.string(), "replay", fs::absolute(tape).string(),
                                   "--emit-tape", fs::absolute(result.replay_tape).string(),
                                   "--overwrite", "--workspace", manifest.workspace.string(),
                                   "--json",
                                   // Within check's grace after its SIGTERM: the replay kills
                                   // its tree and finishes its tape itself.
                                   "--kill-after", "1.5"};
  for (const std::string& glob : manifest.code_globs) args.insert(args.end(), {"--code", glob});
  for (const std::string& glob : manifest.data_globs) args.insert(args.end(), {"--data", glob});
  args.push_back("--");
  args.insert(args.end(), manifest.command.begin(), manifest.command.end());
  std::error_code missing;
  if (!fs::is_directory(manifest.cwd, missing) || !fs::is_directory(manifest.workspace, missing)) {
    result.message = fmt::format("{}: the folder it ran in ({}) or its workspace ({}) is gone",
                                 manifest_path_for(tape).string(), manifest.cwd.string(),
                                 manifest.workspace.string());
    return finish();
  }

  const pid_t pid = spawn_replay(args, manifest.cwd, out, err);
  const std::optional<int> exit = wait_with_timeout(pid, options.timeout);
  result.replay_stdout = tail_of(out, kOutputTail);
  result.replay_stderr = tail_of(err, kOutputTail);
  if (!exit) {
    result.status = CaseResult::Status::timed_out;
    result.message =
        fmt::format("the replay ran past {} s and was killed", options.timeout.count());
    return finish();
  }
  result.replay_exit = *exit;
  const ReplaySummary summary = read_summary(err);
  if (summary.miss) {
    result.status = CaseResult::Status::stopped;
    result.message = "replay stopped: " + *summary.miss;
    // The program's code changed since the recording, and then asked for what the tape does not
    // hold (another LLM request, another subprocess): the agent behaves differently, a failure.
    result.notes = code_notes(tape, result.replay_tape);
    if (!result.notes.empty()) {
      result.status = CaseResult::Status::diverged;
      result.message = "behaviour changed with the code: " + result.message;
    }
    return finish();
  }
  if (!summary.found) {
    result.status = CaseResult::Status::stopped;
    result.message = summary.last_line.empty()
                         ? fmt::format("tapedeck replay exited {} without a summary", *exit)
                         : summary.last_line;
    return finish();
  }
  try {
    auto recorded = TapeReader::open(tape);
    auto replay = TapeReader::open(result.replay_tape);
    const fidelity::Report report = fidelity::compare(*recorded, *replay, mode);
    result.divergences = report.divergences.size();
    result.notes = report.notes;
    result.notes.insert(result.notes.end(), summary.notes.begin(), summary.notes.end());
    if (report.identical() && summary.hollow) {
      result.status = CaseResult::Status::untested;
      result.message =
          "tested nothing: every input the replay consumed was a subprocess's played-back "
          "result, so the program's own code did not run against the tape";
    } else if (report.identical()) {
      result.status = CaseResult::Status::passed;
    } else {
      result.status = CaseResult::Status::diverged;
      result.message = first_divergence(report);
    }
  } catch (const TapeError& error) {
    result.status = CaseResult::Status::error;
    result.message = error.what();
  }
  return finish();
}

}  // namespace

std::vector<CaseResult> check(const std::vector<fs::path>& tapes, const CheckOptions& options) {
  detail::make_directories(options.replays_dir);
  std::vector<CaseResult> results(tapes.size());
  std::atomic<size_t> next{0};
  std::mutex report;
  auto work = [&] {
    for (size_t i = next++; i < tapes.size(); i = next++) {
      if (options.on_start) {
        std::lock_guard lock(report);
        options.on_start(tapes[i]);
      }
      try {
        results[i] = run_case(i, tapes[i], options);
      } catch (const std::exception& error) {
        results[i].tape = tapes[i];
        results[i].status = CaseResult::Status::error;
        results[i].message = error.what();
      }
      if (options.on_done) {
        std::lock_guard lock(report);
        options.on_done(results[i]);
      }
    }
  };
  const size_t workers = std::max<size_t>(1, std::min<size_t>(options.jobs, tapes.size()));
  std::vector<std::jthread> threads;
  for (size_t i = 1; i < workers; ++i) threads.emplace_back(work);
  work();
  threads.clear();  // joins
  return results;
}

}  // namespace tapedeck::suite
