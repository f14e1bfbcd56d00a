#include <fmt/core.h>
#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/pack.hpp"
#include "tapedeck/suite.hpp"

namespace tapedeck::cli {

namespace {
namespace fs = std::filesystem;

struct FmtOptions {
  std::string in;
  std::string out;
  bool quiet = false;
};

int run_fmt(const FmtOptions& options) {
  // A pack's sidecar is where this process unpacked it: entries carried there would be lost.
  std::error_code missing;
  if (!options.out.empty() && fs::exists(options.out, missing) &&
      pack::is_packed_tape(options.out)) {
    throw std::runtime_error(options.out +
                             ": is a packed tape; write the canonical tape elsewhere (and "
                             "`tapedeck pack` it again)");
  }
  FormatReport report = options.out.empty() ? format_tape_to_fd(options.in, STDOUT_FILENO)
                                            : format_tape(options.in, options.out);
  // The manifest goes along, its paths made relative to OUT's folder, so OUT replays as IN did.
  std::error_code error;
  if (!options.out.empty() && fs::exists(suite::manifest_path_for(options.in), error) &&
      !fs::equivalent(options.in, options.out, error)) {
    suite::write_manifest(options.out, suite::read_manifest(options.in));
  }
  if (report.torn_tail) {
    print_warning(
        fmt::format("{}:{}: left out a torn last line ({} bytes; a recording stopped "
                    "mid-write)",
                    options.in, report.torn_tail->line, report.torn_tail->bytes));
  }
  for (const std::string& name : report.cas_invalid_names) {
    print_warning(
        fmt::format("{}: a record names CAS entry `{}`, which is not a 64-hex BLAKE3 "
                    "name; it was not looked up",
                    options.in, name.substr(0, 80)));
  }
  for (const std::string& name : report.cas_missing) {
    print_warning(fmt::format("{}: CAS entry {} is missing from {}; the record still names it",
                              options.in, name, cas_dir_for(options.in).string()));
  }
  if (!options.quiet && !options.out.empty()) {
    fmt::print(stderr, "tapedeck fmt: {} records -> {}", report.records, options.out);
    uint64_t carried = report.cas_linked + report.cas_copied + report.cas_already_present;
    if (carried > 0) {
      fmt::print(stderr, " (CAS: {} linked, {} copied, {} already there)", report.cas_linked,
                 report.cas_copied, report.cas_already_present);
    }
    fmt::print(stderr, "\n");
  }
  return 0;
}
}  // namespace

void add_fmt(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<FmtOptions>();
  CLI::App* cmd = app.add_subcommand(
      "fmt", "Re-encode a tape canonically (the reference serializer's exact bytes)");
  cmd->footer(
      "Re-encode a tape canonically: the exact bytes the reference serializer writes.\n"
      "Without -o the tape goes to stdout; with -o it replaces OUT atomically and its CAS\n"
      "entries are carried into OUT.cas (hard links where possible), its manifest (for\n"
      "`tapedeck check`) into OUT.manifest.\n"
      "IN may be plain or zstd-compressed (told by its first bytes). An OUT named *.zst is\n"
      "written compressed, in one zstd frame (its sidecar and manifest are those of the name\n"
      "without .zst); any other OUT, and stdout, get the plain canonical bytes.\n\n"
      "Examples:\n"
      "  tapedeck fmt run.tape -o canonical.tape\n"
      "  tapedeck fmt run.tape -o run.tape.zst    # compressed, sharing run.tape.cas\n"
      "  tapedeck fmt run.tape | diff run.tape -    # is the tape already canonical?");
  cmd->add_option("IN", options->in, "Tape to read")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", options->out, "Where to write the canonical tape (may be IN)");
  cmd->add_flag("-q,--quiet", options->quiet, "Print nothing but warnings and errors");
  cmd->callback([options, &exit_code] { exit_code = run_fmt(*options); });
}

}  // namespace tapedeck::cli
