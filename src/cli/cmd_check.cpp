// `tapedeck check`: a folder of recordings replayed and judged, as a CI step.
#include <fmt/core.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <set>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tape/atomic_file.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/suite.hpp"
#include "tapedeck/tape_paths.hpp"

namespace tapedeck::cli {

namespace {

namespace fs = std::filesystem;
using suite::CaseResult;

struct CheckArgs {
  std::vector<std::string> paths;
  unsigned jobs = 1;
  std::string junit;
  std::string mode = "semantic";
  std::string replays;
  unsigned timeout_seconds = 600;
  bool json = false;
  bool quiet = false;
  bool dry_run = false;
};

// `text` as a POSIX shell reads it back as one word.
std::string shell_word(std::string_view text) {
  const bool plain = !text.empty() && text.find_first_not_of(
                                          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789_-./=:,+@%") == std::string_view::npos;
  if (plain) return std::string(text);
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// The subprocesses a tape marks as part of the agent (`descended`): a replay runs them again
// when the program starts them, rather than playing them back.
std::vector<std::vector<std::string>> descended_commands(const fs::path& tape) {
  std::vector<std::vector<std::string>> commands;
  auto reader = TapeReader::open(tape);
  while (const Record* record = reader->read()) {
    const auto* spawn = std::get_if<kind::ProcessSpawn>(&record->kind);
    if (spawn == nullptr || !spawn->descended) continue;
    std::vector<std::string> command{spawn->program};
    command.insert(command.end(), spawn->args.begin(), spawn->args.end());
    commands.push_back(std::move(command));
  }
  return commands;
}

// What each tape's manifest would run, one shell line each (with `json`, one JSON object for
// all): a manifest is code (it names the command a replay runs), to be read before a suite from
// elsewhere is checked; and so are the subprocesses its tape says are the agent's, which the
// replay runs again when the program starts them (printed as comments under its line).
int print_commands(const std::vector<fs::path>& tapes, bool json) {
  std::string cases;
  for (const fs::path& tape : tapes) {
    const suite::Manifest manifest = suite::read_manifest(tape);
    const std::string absolute = fs::absolute(tape).string();
    const std::vector<std::vector<std::string>> descended = descended_commands(tape);
    if (json) {
      std::string command;
      for (const std::string& arg : manifest.command) {
        command += (command.empty() ? "" : ",") + json_string(arg);
      }
      std::string again;
      for (const auto& spawn : descended) {
        std::string words;
        for (const std::string& word : spawn)
          words += (words.empty() ? "" : ",") + json_string(word);
        again += (again.empty() ? "[" : ",[") + words + "]";
      }
      auto list = [](const std::vector<std::string>& globs) {
        std::string out;
        for (const std::string& glob : globs) out += (out.empty() ? "" : ",") + json_string(glob);
        return out;
      };
      cases += fmt::format(
          R"({}{{"tape":{},"cwd":{},"workspace":{},"command":[{}],"code":[{}],"data":[{}],)"
          R"("runs_again":[{}]}})",
          cases.empty() ? "" : ",", json_string(absolute), json_string(manifest.cwd.string()),
          json_string(manifest.workspace.string()), command, list(manifest.code_globs),
          list(manifest.data_globs), again);
      continue;
    }
    std::string line = "cd " + shell_word(manifest.cwd.string()) + " && tapedeck replay " +
                       shell_word(absolute) + " --workspace " +
                       shell_word(manifest.workspace.string());
    for (const std::string& glob : manifest.code_globs) line += " --code " + shell_word(glob);
    for (const std::string& glob : manifest.data_globs) line += " --data " + shell_word(glob);
    line += " --";
    for (const std::string& arg : manifest.command) line += " " + shell_word(arg);
    for (const auto& spawn : descended) {
      line += "\n#   runs again when started:";
      for (const std::string& word : spawn) line += " " + shell_word(word);
    }
    fmt::print("{}\n", line);
  }
  if (json)
    fmt::print(R"({{"dry_run":true,"cases":[{}]}})"
               "\n",
               cases);
  return 0;
}

std::string_view label(CaseResult::Status status) {
  switch (status) {
    case CaseResult::Status::passed:
      return "PASS";
    case CaseResult::Status::diverged:
      return "FAIL";
    case CaseResult::Status::stopped:
      return "STOP";
    case CaseResult::Status::timed_out:
      return "TIME";
    case CaseResult::Status::error:
      return "ERR ";
    case CaseResult::Status::untested:
      return "VOID";
  }
  return "ERR ";
}

// The tapes to check. A tape named on the command line must have its manifest; in a folder, a
// tape without one (a replay's own tape, kept beside the recording) is not a case.
std::vector<fs::path> collect(const std::vector<std::string>& paths, size_t& skipped) {
  std::vector<fs::path> tapes;
  std::set<fs::path> seen;
  for (const std::string& path : paths) {
    const bool named = fs::is_regular_file(path);
    for (const fs::path& tape : suite::find_tapes({path})) {
      if (!named && !fs::exists(suite::manifest_path_for(tape))) {
        ++skipped;
        continue;
      }
      // A bad manifest, or a tape naming a path that could leave the view, stops the suite
      // before anything runs.
      suite::read_manifest(tape);
      refuse_unsafe_paths(tape.string());
      if (seen.insert(fs::weakly_canonical(tape)).second) tapes.push_back(tape);
    }
  }
  return tapes;
}

// A live line on a terminal: how far the suite is and what runs now; rewritten in place.
class Progress {
 public:
  Progress(size_t total, bool live) : total_(total), live_(live) {}
  void started(const fs::path& tape) {
    running_.insert(tape.filename().string());
    draw();
  }
  void finished(const CaseResult& result, bool print_line, FILE* lines) {
    // One of them: two tapes of one name in different folders may run at once.
    if (auto it = running_.find(result.tape.filename().string()); it != running_.end()) {
      running_.erase(it);
    }
    ++done_;
    if (!result.passed()) ++failed_;
    clear();
    if (print_line) {
      std::string line = fmt::format("{}  {:6.2f} s  {}", label(result.status), result.seconds,
                                     result.tape.string());
      if (!result.passed()) line += "\n      " + result.message;
      for (const std::string& note : result.notes) line += "\n      note: " + note;
      fmt::print(lines, "{}\n", line);
      std::fflush(lines);
    }
    draw();
  }
  void clear() {
    if (live_ && drawn_) fmt::print(stderr, "\r\x1b[K");
    drawn_ = false;
  }

 private:
  void draw() {
    if (!live_ || done_ == total_) return;
    std::string names;
    for (const std::string& name : running_) names += (names.empty() ? "" : ", ") + name;
    if (names.size() > 60) names = names.substr(0, 57) + "...";
    fmt::print(stderr, "\r\x1b[K[{}/{}] {} not passed · running {}", done_, total_, failed_, names);
    std::fflush(stderr);
    drawn_ = true;
  }
  size_t total_;
  bool live_;
  bool drawn_ = false;
  size_t done_ = 0;
  size_t failed_ = 0;
  std::multiset<std::string> running_;
};

std::string json_report(const std::vector<CaseResult>& results, double seconds, unsigned jobs) {
  size_t passed = 0;
  std::string cases;
  for (const CaseResult& result : results) {
    if (result.passed()) ++passed;
    std::string notes;
    for (const std::string& note : result.notes) {
      notes += (notes.empty() ? "" : ",") + json_string(note);
    }
    cases += fmt::format(
        R"({}{{"tape":{},"status":{},"mode":{},"message":{},"divergences":{},"replay_exit":{},)"
        R"("seconds":{:.3f},"replay_tape":{},"notes":[{}]}})",
        cases.empty() ? "" : ",", json_string(result.tape.string()),
        json_string(suite::to_string(result.status)), json_string(result.mode),
        json_string(result.message), result.divergences, result.replay_exit, result.seconds,
        json_string(result.replay_tape.string()), notes);
  }
  return fmt::format(R"({{"tapes":{},"passed":{},"not_passed":{},"seconds":{:.3f},"jobs":{},)"
                     R"("cases":[{}]}})",
                     results.size(), passed, results.size() - passed, seconds, jobs, cases);
}

int run_check(const CheckArgs& args, bool mode_given) {
  size_t skipped = 0;
  const std::vector<fs::path> tapes = collect(args.paths, skipped);
  if (tapes.empty()) {
    throw std::runtime_error(fmt::format(
        "no tapes with a manifest under {}{}", args.paths.front(),
        skipped ? fmt::format(" ({} without one: record with `tapedeck run --emit-tape`)", skipped)
                : ""));
  }
  if (args.dry_run) return print_commands(tapes, args.json);
  if (!args.junit.empty()) {
    // Checked now, not after a long suite: the report's folder must exist.
    const fs::path folder = fs::absolute(args.junit).parent_path();
    if (!fs::is_directory(folder)) {
      throw std::runtime_error("--junit " + args.junit + ": no folder " + folder.string());
    }
  }

  suite::CheckOptions options;
  std::error_code error;
  options.tapedeck = fs::read_symlink("/proc/self/exe", error);
  options.jobs = args.jobs;
  options.mode = *fidelity::parse_mode(args.mode);
  options.mode_overrides_manifest = mode_given;
  options.timeout = std::chrono::seconds(args.timeout_seconds);
  const bool own_replays = args.replays.empty();
  if (own_replays) {
    const fs::path base = fs::temp_directory_path() / "tapedeck-check-XXXXXX";
    std::string pattern = base.string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      detail::throw_errno(base.parent_path(), "cannot make a folder for the replays");
    }
    options.replays_dir = pattern;
  } else {
    options.replays_dir = args.replays;
  }

  // Case lines go to stdout, or to stderr when stdout carries the JSON report.
  FILE* lines = args.json ? stderr : stdout;
  const bool print_lines = !args.quiet;
  Progress progress(tapes.size(), ::isatty(STDERR_FILENO) != 0 && !args.quiet);
  options.on_start = [&](const fs::path& tape) { progress.started(tape); };
  options.on_done = [&](const CaseResult& result) {
    progress.finished(result, print_lines, lines);
  };
  const auto started = std::chrono::steady_clock::now();
  const std::vector<CaseResult> results = suite::check(tapes, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  progress.clear();

  size_t passed = 0;
  for (const CaseResult& result : results) passed += result.passed() ? 1 : 0;
  if (!args.junit.empty()) {
    detail::AtomicFile file(args.junit);
    file.write(suite::junit_xml(results, "tapedeck check", seconds));
    file.commit();
  }
  const bool kept = !own_replays || passed < results.size();
  if (!kept) fs::remove_all(options.replays_dir, error);

  if (args.json) fmt::print("{}\n", json_report(results, seconds, args.jobs));
  if (!args.quiet) {
    fmt::print(lines, "\ncheck: {} tape{}, {} passed, {} not passed ({:.2f} s, -j {}){}\n",
               results.size(), results.size() == 1 ? "" : "s", passed, results.size() - passed,
               seconds, args.jobs,
               skipped ? fmt::format("; {} tape{} without a manifest skipped", skipped,
                                     skipped == 1 ? "" : "s")
                       : "");
    for (const CaseResult& result : results) {
      if (!result.passed()) {
        fmt::print(lines, "  {} {}: {}\n", label(result.status), result.tape.string(),
                   result.message);
      }
    }
    if (kept) {
      fmt::print(lines, "replays (tape, stdout, stderr of each case) in {}\n",
                 options.replays_dir.string());
    }
    if (!args.junit.empty()) fmt::print(lines, "JUnit report: {}\n", args.junit);
  }
  return passed == results.size() ? 0 : 1;
}

}  // namespace

void add_check(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<CheckArgs>();
  CLI::App* cmd =
      app.add_subcommand("check", "Replay a suite of recordings and judge each one (for CI)");
  cmd->footer(
      "Replays every tape named, and every *.tape (or compressed *.tape.zst) with a manifest\n"
      "under the folders named, each by its own `tapedeck replay` (offline, in a private view\n"
      "of its workspace), and judges\n"
      "it against its recording with the fidelity oracle. One line per tape as it ends, a\n"
      "summary, and with --junit a JUnit XML report: a testcase per tape, the first divergence\n"
      "as a failure's message. Exit 0 when every tape passed, 1 when any diverged (FAIL),\n"
      "stopped on an input the tape does not hold (STOP), timed out (TIME), could not be\n"
      "replayed (ERR) or tested nothing (VOID: every input was a subprocess's played-back\n"
      "result, the agent's own code never met the tape), 2 on bad input.\n\n"
      "The program's code is read as it is now, its data as recorded (see `tapedeck run\n"
      "--help`, --code and --data): a changed prompt makes the replay stop on the LLM request it\n"
      "no longer matches (STOP, naming the differing part); a change that leaves behaviour\n"
      "alike (a comment) passes, with a note naming the file. The manifest keeps --code and\n"
      "--data (\"code\": [...], \"data\": [...]).\n\n"
      "How a tape is replayed comes from its manifest, T.manifest beside T, which `tapedeck run\n"
      "--emit-tape T` writes: the command, the folder it ran in and its workspace (relative to\n"
      "the manifest's folder, so tapes committed beside the code replay from any checkout), and\n"
      "optionally \"fidelity\": a mode for that tape. Each workspace must be as its recording\n"
      "found it (a fresh checkout), as for replay.\n\n"
      "A manifest is code: it names the command a replay runs, with your rights. Review the\n"
      "manifests of tapes from a pull request as you review its scripts (--dry-run prints each\n"
      "command). A tape itself is data: one whose records name a path outside its workspace is\n"
      "refused before anything runs (exit 2), and `tapedeck verify` lists every such record.\n\n"
      "Each tape is its own process, so a CI matrix can also shard a suite by tape:\n"
      "  tapedeck check tapes/ -j 4 --junit report.xml\n"
      "  tapedeck check $(ls tapes/*.tape | awk 'NR % 3 == 0')   # one shard of three\n"
      "  tapedeck check tapes/ --json | jq '.cases[] | select(.status != \"passed\")'");
  cmd->add_option("TAPES", args->paths, "Tapes, or folders searched for *.tape")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("-j,--jobs", args->jobs, "Replays at once")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  cmd->add_option("--junit", args->junit, "Write a JUnit XML report here");
  cmd->add_flag("--dry-run", args->dry_run,
                "Print the command each manifest would run (one shell line per tape; with --json, "
                "one JSON object) and run nothing: review a suite from elsewhere as you review "
                "code");
  cmd->add_option("--mode", args->mode,
                  "Fidelity mode for every tape (default: the manifest's, else semantic)")
      ->check(CLI::IsMember({"byte-identical", "semantic", "outcome", "phase-aware"}));
  cmd->add_option("--replays", args->replays,
                  "Keep each case's replay tape, stdout and stderr here (default: a temporary "
                  "folder, removed when every tape passed)");
  cmd->add_option("--timeout", args->timeout_seconds,
                  "Seconds a replay may run before it is killed and reported")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  cmd->add_flag("--json", args->json,
                "The report as one JSON object on stdout (case lines go to stderr)");
  cmd->add_flag("-q,--quiet", args->quiet, "No case lines, progress or summary");
  cmd->callback(
      [cmd, args, &exit_code] { exit_code = run_check(*args, cmd->count("--mode") > 0); });
}

}  // namespace tapedeck::cli
