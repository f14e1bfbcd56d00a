#include <fmt/core.h>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/suite.hpp"

namespace tapedeck::cli {

namespace {

struct GcOptions {
  std::string folder;
  bool dry_run = false;
  bool json = false;
};

int run_gc(const GcOptions& options) {
  const suite::StoreCollection done = suite::collect_store_garbage(options.folder, options.dry_run);
  const char* verb = options.dry_run ? "would remove" : "removed";
  if (options.json) {
    fmt::print(
        R"({{"store":{},"tapes":{},"named":{},"removed":{},"removed_bytes":{},"dry_run":{}}})"
        "\n",
        json_string(done.store.string()), done.tapes, done.named, done.removed, done.removed_bytes,
        options.dry_run ? "true" : "false");
  } else {
    fmt::print("{}: {} tape(s) name {} blob(s) kept; {} {} blob(s) no tape names ({} bytes)\n",
               done.store.string(), done.tapes, done.named, verb, done.removed, done.removed_bytes);
  }
  return 0;
}

}  // namespace

void add_gc(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<GcOptions>();
  CLI::App* cmd = app.add_subcommand(
      "gc", "Remove the blobs of a folder's shared store that no tape there names any more");
  cmd->footer(
      "A folder of tapes may keep one content store for all of them: make DIR/.tapedeck-cas,\n"
      "and every tape written into DIR without a sidecar of its own (run/replay --emit-tape,\n"
      "fmt -o) keeps its blobs there, each distinct blob once. Tapes delete nothing from it;\n"
      "gc reads every *.tape and *.tape.zst of DIR that uses the store (not its subfolders:\n"
      "each folder has its own) and removes the blobs none of them names. A tape that cannot\n"
      "be read stops gc before anything is removed (exit 2). Do not run it while a recording\n"
      "writes into DIR: the blobs of a tape not yet written are named by no tape.\n\n"
      "Examples:\n"
      "  mkdir tapes/.tapedeck-cas && tapedeck fmt run.tape -o tapes/run.tape\n"
      "  rm tapes/old-*.tape && tapedeck gc tapes --dry-run");
  cmd->add_option("DIR", options->folder, "The folder of tapes holding .tapedeck-cas")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--dry-run", options->dry_run, "Count what would be removed; remove nothing");
  cmd->add_flag("--json", options->json,
                "One JSON object: store, tapes, named, removed, removed_bytes, dry_run");
  cmd->callback([options, &exit_code] { exit_code = run_gc(*options); });
}

}  // namespace tapedeck::cli
