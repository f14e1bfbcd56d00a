#include <fmt/core.h>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/view.hpp"

namespace tapedeck::cli {

namespace {

struct ViewCommandOptions {
  std::string in;
  std::string out;
  std::string against;
  std::string mode = "semantic";
  size_t cas_cap = 64 * 1024;
  size_t cas_budget = 32 << 20;
};

int run_view(const ViewCommandOptions& options) {
  view::ViewOptions view_options;
  if (!options.against.empty()) view_options.against = options.against;
  view_options.mode = *fidelity::parse_mode(options.mode);
  view_options.cas_embed_cap = options.cas_cap;
  view_options.cas_embed_budget = options.cas_budget;
  const view::ViewReport report = view::write_html(options.in, options.out, view_options);
  fmt::print(stderr, "tapedeck view: {} records -> {} ({})", report.records, options.out,
             human_bytes(report.html_bytes));
  if (view_options.against) fmt::print(stderr, ", {} divergences marked", report.divergences);
  fmt::print(stderr, "\n");
  return 0;
}

}  // namespace

void add_view(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ViewCommandOptions>();
  CLI::App* cmd =
      app.add_subcommand("view", "Write a tape as a timeline a person reads in a browser");
  cmd->footer(
      "Writes one self-contained HTML file (no network, nothing fetched): a lane per kind over\n"
      "virtual time, sleeps and subprocesses as spans, the runtime_finalize phase shaded. Click\n"
      "an event for its fields and payload (JSON folded, CAS payloads embedded up to --cas-cap\n"
      "each and --cas-budget in all, binary as hex). With --against, the replay's timeline too, "
      "fidelity divergences marked.\n\n"
      "Examples:\n"
      "  tapedeck view run.tape -o run.html\n"
      "  tapedeck view recorded.tape --against replay.tape -o compare.html");
  cmd->add_option("IN", options->in, "Tape to show")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", options->out, "The HTML file to write")->required();
  cmd->add_option("--against", options->against, "A replay's tape to compare with IN")
      ->check(CLI::ExistingFile);
  cmd->add_option("--mode", options->mode, "Fidelity mode for --against")
      ->check(CLI::IsMember({"byte-identical", "semantic", "outcome", "phase-aware"}))
      ->capture_default_str();
  cmd->add_option("--cas-cap", options->cas_cap, "Largest CAS payload embedded, in bytes")
      ->capture_default_str();
  cmd->add_option("--cas-budget", options->cas_budget,
                  "Most CAS bytes embedded in all; past it entries are named, not embedded")
      ->capture_default_str();
  cmd->callback([options, &exit_code] { exit_code = run_view(*options); });
}

}  // namespace tapedeck::cli
