// `tapedeck run` and `tapedeck replay`: an unmodified program under the testbench.
#include <fmt/core.h>
#include <unistd.h>

#include <filesystem>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "supervisor/supervisor.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/faults.hpp"
#include "tapedeck/suite.hpp"
#include "tapedeck/tape.hpp"
#include "tapedeck/tape_paths.hpp"

namespace tapedeck::cli {

namespace {

namespace fs = std::filesystem;
using supervisor::RunOptions;

struct RunArgs {
  std::string tape;
  std::string emit;
  std::string workspace;
  std::string llm_upstream;
  std::vector<std::string> allow;
  std::string fsync = "phase";
  std::string isolation = "auto";
  bool quiet = false;
  bool overwrite = false;
  bool json = false;
  std::vector<std::string> command;
  std::vector<std::string> faults;  // replay --fault SPEC
  std::string on_miss = "fail";     // replay: fail, or record (upstream, onto --emit-tape)
  std::vector<std::string> code_globs;
  std::vector<std::string> data_globs;
  std::vector<std::string> black_box_globs;  // run
  bool thread_lanes = false;                 // run
  double kill_after_seconds = 5;
};

// The preload library and the exec shim live beside this binary.
fs::path beside_this_binary(const std::string& name) {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? fs::path(name) : self.parent_path() / name;
}

FsyncPolicy parse_fsync(const std::string& text) {
  if (text == "never") return FsyncPolicy::never;
  if (text == "always") return FsyncPolicy::every_flush;
  return FsyncPolicy::at_phase_and_finish;
}

// A tape already there is a recording someone may want: replaced only when asked.
void make_room_for(const std::string& tape, bool overwrite) {
  if (tape.empty() || !fs::exists(tape)) return;
  if (!overwrite) {
    throw std::runtime_error("--emit-tape " + tape +
                             ": a tape is already there (choose another path, or --overwrite)");
  }
  fs::remove(tape);
  // NAME.tape and NAME.tape.zst share a sidecar and a manifest: kept while the other is there.
  const fs::path sibling = fs::path(tape).extension() == ".zst" ? fs::path(tape).replace_extension()
                                                                : fs::path(tape + ".zst");
  if (fs::exists(sibling)) return;
  // A folder's shared store holds other tapes' blobs too: `tapedeck gc` clears what none names.
  fs::remove_all(own_sidecar_for(tape));
  fs::remove(suite::manifest_path_for(tape));
}

int run_supervised(RunOptions::Mode mode, const RunArgs& args) {
  // Every argument is checked before anything on disk changes.
  std::vector<Fault> faults;
  const fs::path workspace =
      fs::weakly_canonical(args.workspace.empty() ? fs::current_path() : fs::path(args.workspace));
  for (const std::string& spec : args.faults) {
    Fault fault = parse_fault(spec);  // FaultSpecError: one line, exit 2
    if (fault.target == Fault::Target::file) {
      // file:PATH names a workspace file as the tape does: relative to the workspace.
      const fs::path named = fs::weakly_canonical(workspace / fault.name);
      const fs::path relative = named.lexically_relative(workspace);
      if (relative.empty() || *relative.begin() == "..") {
        throw FaultSpecError("--fault '" + spec + "': " + fault.name +
                             " is not in the workspace (" + workspace.string() + ")");
      }
      fault.name = relative.string();
    }
    faults.push_back(std::move(fault));
  }
  const bool record_misses = args.on_miss == "record";
  if (record_misses && args.emit.empty()) {
    throw std::runtime_error(
        "--on-miss record: give --emit-tape NEW, the tape the recorded misses go on");
  }
  if (record_misses && args.llm_upstream.empty()) {
    throw std::runtime_error(
        "--on-miss record: give --llm-upstream URL, where LLM calls the tape does not hold go");
  }
  if (mode == RunOptions::Mode::untaped && !args.llm_upstream.empty()) {
    // An untaped run starts no proxy: the program would be sent to its own default endpoint
    // (Claude Code retried api.anthropic.com for three minutes), and the flag did nothing.
    throw std::runtime_error(
        "--llm-upstream: a run without --emit-tape is untaped and starts no LLM proxy; give "
        "--emit-tape FILE, or drop --llm-upstream");
  }
  if (mode == RunOptions::Mode::replay) refuse_unsafe_paths(args.tape);  // before anything runs
  make_room_for(args.emit, args.overwrite);
  RunOptions options;
  options.record_misses = record_misses;
  options.faults = std::move(faults);
  options.mode = mode;
  options.tape = mode == RunOptions::Mode::replay ? args.tape : args.emit;
  if (mode == RunOptions::Mode::replay && !args.emit.empty()) options.emit = args.emit;
  options.workspace = args.workspace.empty() ? fs::current_path() : fs::path(args.workspace);
  options.llm_upstream = args.llm_upstream;
  while (!options.llm_upstream.empty() && options.llm_upstream.back() == '/') {
    options.llm_upstream.pop_back();
  }
  options.allow = args.allow;
  options.fsync = parse_fsync(args.fsync);
  options.preload_library = beside_this_binary("libtapedeck_preload.so");
  options.exec_shim = beside_this_binary("tapedeck-exec");
  options.command = args.command;
  options.isolation = *supervisor::parse_isolation(args.isolation);
  options.code_globs = args.code_globs;
  options.data_globs = args.data_globs;
  options.black_box_globs = args.black_box_globs;
  options.thread_lanes = args.thread_lanes;
  options.kill_after =
      std::chrono::milliseconds(static_cast<int64_t>(args.kill_after_seconds * 1000.0));

  const supervisor::RunOutcome outcome = supervisor::run(options);
  if (mode == RunOptions::Mode::record || (record_misses && !outcome.miss)) {
    // How to replay this tape without being told again, for `tapedeck check`.
    suite::write_manifest(mode == RunOptions::Mode::record ? options.tape : *options.emit,
                          {options.command, fs::current_path(), options.workspace, std::nullopt,
                           options.code_globs, options.data_globs});
  }
  const char* verb = mode == RunOptions::Mode::replay ? "replay" : "run";
  if (args.json) {
    // Standard output is the program's: the summary goes to stderr, as one JSON line.
    std::string warnings;
    for (const std::string& warning : outcome.warnings) {
      warnings += (warnings.empty() ? "" : ",") + json_string(warning);
    }
    fmt::print(
        stderr,
        R"({{"command":{},"tape":{},"emitted":{},"exit_code":{},"records":{},"wall_ms":{},)"
        R"("miss":{},"miss_wanted":{},"miss_recorded":{},"unused_inputs":{},"unused_example":{},)"
        R"("isolation":{},"isolation_setup_ms":{:.3f},)"
        R"("view":{},"floor":{},"hollow":{},"setup_ms":{:.1f},"program_ms":{:.1f},)"
        R"("finish_ms":{:.1f},"warnings":[{}]}})"
        "\n",
        json_string(verb), json_string(mode == RunOptions::Mode::replay ? args.tape : args.emit),
        args.emit.empty() ? "null" : json_string(args.emit), outcome.exit_code, outcome.records,
        outcome.wall.count(), outcome.miss ? json_string(*outcome.miss) : "null",
        outcome.miss_wanted.empty() ? "null" : json_string(outcome.miss_wanted),
        outcome.miss_recorded.empty() ? "null" : json_string(outcome.miss_recorded),
        outcome.unused_inputs, json_string(outcome.unused_example),
        mode == RunOptions::Mode::replay
            ? json_string(supervisor::isolation_name(outcome.isolation))
            : "null",
        outcome.isolation_setup_ms,
        outcome.view_layer.empty() ? "null" : json_string(outcome.view_layer), outcome.floor,
        outcome.hollow, outcome.setup_ms, outcome.program_ms, outcome.finish_ms, warnings);
    return outcome.miss ? 2 : outcome.exit_code;
  }
  for (const std::string& warning : outcome.warnings) print_warning(warning);
  if (outcome.miss) {
    print_error(fmt::format("replay stopped: {}", *outcome.miss));
    return 2;
  }
  if (!args.quiet) {
    const double seconds = static_cast<double>(outcome.wall.count()) / 1000.0;
    if (mode == RunOptions::Mode::record) {
      fmt::print(stderr, "tapedeck {}: {} records -> {} (program exit {}, {:.2f} s)\n", verb,
                 outcome.records, args.emit, outcome.exit_code, seconds);
    } else if (mode == RunOptions::Mode::replay) {
      fmt::print(
          stderr, "tapedeck {}: replayed {} (program exit {}, {:.2f} s){}\n", verb, args.tape,
          outcome.exit_code, seconds,
          args.emit.empty() ? "" : fmt::format("; {} records -> {}", outcome.records, args.emit));
    }
    if (outcome.unused_inputs > 0) {
      print_warning(fmt::format("the replay left {} recorded input(s) unused, first: {}",
                                outcome.unused_inputs, outcome.unused_example));
    }
  }
  return outcome.exit_code;
}

void add_common(CLI::App* cmd, RunArgs& args) {
  cmd->add_option("--workspace", args.workspace,
                  "Folder whose files are taped (default: the current folder); files elsewhere "
                  "pass through untaped")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--allow", args.allow,
                  "HOST[:PORT] the program may connect to (repeatable); all else is denied "
                  "but tapedeck's own LLM proxy")
      ->allow_extra_args(false);
  cmd->add_option("--fsync", args.fsync, "When the tape is synced to disk: never, phase, always")
      ->check(CLI::IsMember({"never", "phase", "always"}));
  cmd->add_flag("--overwrite", args.overwrite, "Replace a tape already at --emit-tape");
  cmd->add_flag("-q,--quiet", args.quiet, "Print nothing but warnings and errors");
  cmd->add_flag("--json", args.json,
                "The summary as one JSON line on stderr (stdout is the program's)");
  cmd->add_option("--code", args.code_globs,
                  "GLOB of workspace files that are the program's code (repeatable): read as "
                  "they are now on replay, so an edit is tested. Default: the script the "
                  "command runs, *.py, *.js, *.mjs, *.ts, *.sh and other sources, "
                  "node_modules/, .venv/, site-packages/, package.json, Makefiles. Globs match "
                  "workspace-relative paths, `*` crossing `/` (`src/*`)")
      ->allow_extra_args(false);
  cmd->add_option("--data", args.data_globs,
                  "GLOB of workspace files that are data the program works on, even when they "
                  "look like code (a repository a coding agent reads): served as recorded on "
                  "replay (repeatable; wins over --code and the default)")
      ->allow_extra_args(false);
  cmd->add_option("--kill-after", args.kill_after_seconds,
                  "SECONDS the program has to end after tapedeck gets SIGTERM or SIGHUP (passed "
                  "on to it) before its whole tree is killed; the tape is finished either way, "
                  "and tapedeck exits 128 + the signal, as `timeout` does")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("PROGRAM", args.command, "The program and its arguments, after --")->required();
}

}  // namespace

void add_run(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd =
      app.add_subcommand("run", "Run a program under the testbench and tape its inputs");
  cmd->footer(
      "Runs PROGRAM (a shell script, a Python agent, any dynamically linked binary) with the\n"
      "tapedeck preload library. With --emit-tape, every input the process tree consumes is\n"
      "taped: clock reads, sleeps, files under the workspace, subprocesses (stdout, stderr,\n"
      "exit code), and LLM calls made over HTTP through tapedeck's loopback proxy, which\n"
      "OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GOOGLE_GEMINI_BASE_URL and TAPEDECK_LLM_URL point\n"
      "at. Network connects are\n"
      "denied except to the proxy and --allow. Exits with the program's exit code; 2 when\n"
      "tapedeck itself fails.\n\n"
      "The agent is the process that talks to the model: a subprocess that calls the LLM, and\n"
      "every one on the way to it from PROGRAM (timeout, a shell script, npm run, npx, make),\n"
      "is taped as the root is and runs again on replay; every other subprocess (git, a\n"
      "compiler, a command the model asked for) is a tool, taped by its output and played back\n"
      "(--black-box keeps one so). Workspace files that are code (--code, --data) are read as\n"
      "they are now on replay, so an edited agent is what runs.\n\n"
      "Examples:\n"
      "  tapedeck run --emit-tape run.tape --llm-upstream https://api.openai.com -- python3 "
      "agent.py\n"
      "  tapedeck run --emit-tape run.tape --workspace ./repo -- bash agent.sh\n"
      "  tapedeck replay run.tape --emit-tape replay.tape -- python3 agent.py\n"
      "  tapedeck fidelity run.tape replay.tape --mode semantic");
  cmd->add_option("--emit-tape", args->emit,
                  "Where to write the tape (without it: run untaped, with no LLM proxy); a name "
                  "ending in .zst is "
                  "written zstd-compressed (NAME.tape.zst, its sidecar NAME.tape.cas)");
  cmd->add_option("--llm-upstream", args->llm_upstream,
                  "Where the LLM proxy relays requests, e.g. https://api.openai.com");
  cmd->add_flag("--thread-lanes", args->thread_lanes,
                "Tape each thread's clock reads in a lane of its own, so that a replay hands every "
                "thread its own times whatever order the threads read in (worker threads, Node "
                "workers). Not yet the default: a thread whose read count varies with "
                "contention (CPython's locks under load) can read a few ms off. A replay follows "
                "its tape");
  cmd->add_option("--black-box", args->black_box_globs,
                  "GLOB of programs (name or path) kept black boxes even when they call the LLM: "
                  "run without the preload, their calls straight to --llm-upstream, played back "
                  "on replay (repeatable). Without it, a subprocess that calls the LLM, and "
                  "every one on the way to it (a wrapper, a script, npm run), is the agent and "
                  "runs again on replay")
      ->allow_extra_args(false);
  add_common(cmd, *args);
  cmd->callback([args, &exit_code] {
    exit_code = run_supervised(
        args->emit.empty() ? RunOptions::Mode::untaped : RunOptions::Mode::record, *args);
  });
}

void add_replay(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd =
      app.add_subcommand("replay", "Replay a program against its tape, offline and fast");
  cmd->footer(
      "Runs PROGRAM again with every input served from TAPE: clock reads give the recorded\n"
      "values, sleeps return at once, workspace data reads see the recorded bytes while the\n"
      "program's code is read as it is now (--code, --data), subprocesses are not run (their\n"
      "recorded output and exit code are played back), and LLM calls are answered by the\n"
      "proxy from the tape, streams chunk by chunk. The network is closed.\n"
      "The workspace is never changed: the program runs in a private view of it (--isolation)\n"
      "where every file operation is answered by the kernel as on the real one. An input the\n"
      "tape does not hold stops the program; tapedeck names the record it expected and exits\n"
      "2. Replay expects the workspace as the recording found it (a fresh checkout), but for\n"
      "the program's code: an edit there is what runs, and fidelity notes it. A replay in which\n"
      "every input was a subprocess's played-back result tested nothing, and says so.\n\n"
      "Examples:\n"
      "  tapedeck replay run.tape --emit-tape replay.tape -- python3 agent.py\n"
      "  tapedeck fidelity run.tape replay.tape --mode semantic\n"
      "  tapedeck replay run.tape --fault 'llm#1=429' -- node agent.mjs   # a rate limit, then "
      "the retry\n"
      "  tapedeck replay run.tape --fault 'file:config.json=eacces' --fault "
      "'process:git#1=exit:128' "
      "-- python3 agent.py\n"
      "  tapedeck replay run.tape --on-miss record --llm-upstream https://api.openai.com \\\n"
      "      --emit-tape new.tape -- python3 agent.py 'a changed prompt'   # VCR's new_episodes\n\n"
      "A fault makes the run leave the recording: from there a wait with nothing ready and no\n"
      "LLM call under way (a client's backoff) is skipped, and the replay's tape holds an\n"
      "llm_fault, process_fault or file_fault record where each fault struck (fidelity shows it\n"
      "as the first divergence).");
  cmd->add_option("TAPE", args->tape, "The recorded tape")->required()->check(CLI::ExistingFile);
  cmd->add_option("--emit-tape", args->emit,
                  "Where to write the replay's own tape (compressed when its name ends in .zst)");
  cmd->add_option("--isolation", args->isolation,
                  "How the workspace is kept unchanged: namespace (a kernel overlay in a private "
                  "mount namespace), copy (a copy the preload library redirects to), or auto "
                  "(namespace where the kernel allows it, else copy, with a warning)")
      ->check(CLI::IsMember({"auto", "namespace", "copy"}));
  cmd->add_option("--on-miss", args->on_miss,
                  "What an LLM call or a subprocess the tape does not hold does: fail (stop the "
                  "replay, exit 2) or record (the call goes to --llm-upstream, the subprocess "
                  "runs for real, both recorded on --emit-tape, which becomes a complete tape: "
                  "VCR's new_episodes)")
      ->check(CLI::IsMember({"fail", "record"}))
      ->capture_default_str();
  cmd->add_option("--llm-upstream", args->llm_upstream,
                  "With --on-miss record: where calls the tape does not hold go");
  cmd->add_option("--fault", args->faults,
                  "Inject a fault where the recording had none, TARGET=EFFECT (repeatable): "
                  "llm#N (the recording's N-th LLM call; a retry is served) or llm#* (every "
                  "request) = an HTTP status 400-599, timeout, reset, cut@K (a stream ends "
                  "after K events) or slow@MS (MS of the program's time between events); "
                  "process#N (the N-th subprocess) or process:NAME#N (the N-th run of NAME) = "
                  "exit:CODE or signal:NAME; file:PATH (every read of a workspace file) = "
                  "enoent, eacces or eio (the open fails)");
  add_common(cmd, *args);
  cmd->callback(
      [args, &exit_code] { exit_code = run_supervised(RunOptions::Mode::replay, *args); });
}

}  // namespace tapedeck::cli
