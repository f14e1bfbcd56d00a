// `tapedeck pack` and `unpack`: a tape, its sidecar entries and its manifest as one file.
#include <fmt/core.h>

#include <filesystem>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/pack.hpp"
#include "tapedeck/suite.hpp"

namespace tapedeck::cli {

namespace {

namespace fs = std::filesystem;

struct PackOptions {
  std::string in;
  std::string out;
  bool overwrite = false;
  bool quiet = false;
};

// NAME.tape (or NAME.tape.zst) -> NAME.tdk beside it.
std::string default_pack_name(const std::string& tape) {
  std::string name = tape;
  if (name.ends_with(".zst")) name.resize(name.size() - 4);
  if (name.ends_with(".tape")) name.resize(name.size() - 5);
  return name + ".tdk";
}

int run_pack(const PackOptions& options) {
  const std::string out = options.out.empty() ? default_pack_name(options.in) : options.out;
  if (fs::exists(out) && !options.overwrite) {
    throw std::runtime_error(out + ": a file is already there (choose another -o, or --overwrite)");
  }
  // The manifest goes along with its paths made relative to the pack's folder.
  std::optional<std::string> manifest;
  if (fs::exists(suite::manifest_path_for(options.in))) {
    manifest =
        suite::manifest_json(suite::read_manifest(options.in), fs::absolute(out).parent_path());
  }
  const pack::PackReport report = pack::pack_tape(options.in, out, manifest);
  if (!options.quiet) {
    fmt::print(stderr,
               "tapedeck pack: {} records ({} bytes), {} sidecar entr(ies) ({} bytes){} -> {} "
               "({} bytes)\n",
               report.records, report.tape_bytes, report.entries, report.entry_bytes,
               manifest ? " and the manifest" : "", out, fs::file_size(out));
  }
  return 0;
}

int run_unpack(const PackOptions& options) {
  const fs::path dir =
      options.out.empty() ? fs::absolute(options.in).parent_path() : fs::path(options.out);
  const fs::path tape = pack::unpack(options.in, dir, options.overwrite);
  // The manifest's paths were relative to the pack's folder: now to the tape's.
  if (fs::exists(suite::manifest_path_for(tape))) {
    suite::write_manifest(tape, suite::read_manifest(options.in));
  }
  if (!options.quiet) fmt::print(stderr, "tapedeck unpack: {} -> {}\n", options.in, tape.string());
  return 0;
}

}  // namespace

void add_pack(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<PackOptions>();
  CLI::App* cmd =
      app.add_subcommand("pack", "Put a tape, its sidecar and its manifest into one file");
  cmd->footer(
      "Writes IN (plain, compressed or packed), every sidecar entry its records name and its\n"
      "manifest into one file (default: NAME.tdk beside NAME.tape): a zstd-compressed POSIX tar\n"
      "(`tar --zstd -tf NAME.tdk` lists it) with fixed times and owners, so the same tape packs\n"
      "to the same bytes. Every command reads a pack where it reads a tape (replay, verify,\n"
      "show, stats, fidelity, view, scan, fmt, and check, which finds *.tdk in folders), from a\n"
      "private folder it unpacks it into and removes. Refused (exit 2, nothing written): an\n"
      "entry a replay needs that the sidecar lacks, and a credential on the tape or in an entry\n"
      "(`tapedeck scan --redact IN` first: a pack never holds one unredacted).\n\n"
      "Examples:\n"
      "  tapedeck pack run.tape                # -> run.tdk\n"
      "  tapedeck replay run.tdk -- python3 agent.py\n"
      "  tapedeck unpack run.tdk -o restored/");
  cmd->add_option("IN", options->in, "The tape to pack")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", options->out, "The pack to write (default: NAME.tdk)");
  cmd->add_flag("--overwrite", options->overwrite, "Replace a file already at the output");
  cmd->add_flag("-q,--quiet", options->quiet, "Print nothing but errors");
  cmd->callback([options, &exit_code] { exit_code = run_pack(*options); });
}

void add_unpack(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<PackOptions>();
  CLI::App* cmd = app.add_subcommand("unpack", "Take a packed tape apart again");
  cmd->footer(
      "Writes NAME.tape, NAME.tape.cas/ and NAME.tape.manifest from the pack IN into DIR\n"
      "(default: IN's folder), the manifest's paths made relative to DIR. Every member's name\n"
      "and type is checked first: a pack holding anything else is refused before anything is\n"
      "written.\n\n"
      "Example:\n"
      "  tapedeck unpack run.tdk -o restored/");
  cmd->add_option("IN", options->in, "The pack")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", options->out, "The folder to unpack into");
  cmd->add_flag("--overwrite", options->overwrite, "Replace a tape already there");
  cmd->add_flag("-q,--quiet", options->quiet, "Print nothing but errors");
  cmd->callback([options, &exit_code] { exit_code = run_unpack(*options); });
}

}  // namespace tapedeck::cli
