#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/fidelity.hpp"

namespace tapedeck::cli {

namespace {

struct FidelityOptions {
  std::string recorded;
  std::string replay;
  std::string mode = "semantic";
  bool json = false;
  size_t list = 10;
};

// Shows both lines around where they first differ, the differing stretch marked: in colour on a
// terminal, and always with a caret line under it.
void print_side_by_side(const std::string& recorded, const std::string& replay) {
  size_t prefix = 0;
  while (prefix < recorded.size() && prefix < replay.size() && recorded[prefix] == replay[prefix]) {
    ++prefix;
  }
  size_t suffix = 0;
  while (suffix < recorded.size() - prefix && suffix < replay.size() - prefix &&
         recorded[recorded.size() - 1 - suffix] == replay[replay.size() - 1 - suffix]) {
    ++suffix;
  }
  constexpr size_t kContext = 48;
  const size_t from = prefix > kContext ? prefix - kContext : 0;
  const bool colour = ::isatty(STDOUT_FILENO) != 0;
  auto show = [&](std::string_view label, const std::string& line) {
    const size_t end = line.size() - suffix;
    const size_t to = std::min(line.size(), end + kContext);
    const std::string lead = from > 0 ? "…" : "";
    const std::string tail = to < line.size() ? "…" : "";
    const std::string before = line.substr(from, prefix - from);
    const std::string differing = line.substr(prefix, end - prefix);
    const std::string after = line.substr(end, to - end);
    if (colour) {
      fmt::print("  {:<9}{}{}\x1b[1;31m{}\x1b[0m{}{}\n", label, lead, before, differing, after,
                 tail);
    } else {
      fmt::print("  {:<9}{}{}{}{}{}\n", label, lead, before, differing, after, tail);
    }
    // Count characters, not bytes, so the carets line up under multi-byte text.
    auto width = [](std::string_view text) {
      return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
      }));
    };
    fmt::print("  {:<9}{}{}\n", "", std::string(width(lead) + width(before), ' '),
               std::string(std::max<size_t>(width(differing), 1), '^'));
  };
  show("recorded", recorded);
  show("replay", replay);
}

int run_fidelity(const FidelityOptions& options) {
  const auto mode = fidelity::parse_mode(options.mode);
  auto recorded = TapeReader::open(options.recorded);
  auto replay = TapeReader::open(options.replay);
  const fidelity::Report report = fidelity::compare(*recorded, *replay, *mode);
  warn_if_torn(*recorded);
  warn_if_torn(*replay);

  if (options.json) {
    std::string out = fmt::format(
        R"({{"mode":{},"recorded":{},"replay":{},"recorded_records":{},"replay_records":{},)"
        R"("unmatched_clock_reads":{},"score":{:.6f},"divergences":[)",
        json_string(fidelity::to_string(report.mode)), json_string(options.recorded),
        json_string(options.replay), report.recorded_records, report.replay_records,
        report.unmatched_clock_reads, report.score);
    for (size_t i = 0; i < report.divergences.size(); ++i) {
      const auto& d = report.divergences[i];
      out += fmt::format(R"({}{{"seq":{},"category":{},"message":{}}})", i ? "," : "", d.seq,
                         json_string(d.category), json_string(d.message));
    }
    out += "],\"notes\":[";
    for (size_t i = 0; i < report.notes.size(); ++i) {
      out += (i ? "," : "") + json_string(report.notes[i]);
    }
    fmt::print("{}]}}\n", out);
    return report.identical() ? 0 : 1;
  }
  // A note (the program's code changed) is no divergence: said first, whatever the verdict.
  for (const std::string& note : report.notes) fmt::print("note: {}\n", note);

  fmt::print("fidelity ({}): {} recorded records, {} replayed: ", fidelity::to_string(report.mode),
             report.recorded_records, report.replay_records);
  const std::string timing = report.unmatched_clock_reads == 0
                                 ? ""
                                 : fmt::format(
                                       " ({} clock reads or timed-out waits one side made in a "
                                       "longer stretch of them: timing)",
                                       report.unmatched_clock_reads);
  if (report.identical()) {
    fmt::print("no divergence (score 1.000){}\n", timing);
    return 0;
  }
  fmt::print("{} divergence{} (score {:.3f}){}\n", report.divergences.size(),
             report.divergences.size() == 1 ? "" : "s", report.score, timing);
  const auto& first = report.divergences.front();
  fmt::print("\nfirst divergence, at seq {}: {}\n  {}\n", first.seq, first.category, first.message);
  if (!first.recorded_line.empty() && !first.replay_line.empty()) {
    print_side_by_side(first.recorded_line, first.replay_line);
  } else if (!first.recorded_line.empty() || !first.replay_line.empty()) {
    fmt::print("  {:<9}{}\n", first.recorded_line.empty() ? "replay" : "recorded",
               first.recorded_line.empty() ? first.replay_line : first.recorded_line);
  }
  const size_t shown = std::min(report.divergences.size() - 1, options.list);
  if (shown > 0) fmt::print("\nthen:\n");
  for (size_t i = 1; i <= shown; ++i) {
    const auto& d = report.divergences[i];
    // A field's divergence says its category first already.
    if (d.message.starts_with(d.category)) {
      fmt::print("  seq {}: {}\n", d.seq, d.message);
    } else {
      fmt::print("  seq {}: {}: {}\n", d.seq, d.category, d.message);
    }
  }
  if (report.divergences.size() - 1 > shown) {
    fmt::print("  … and {} more (--json lists them all)\n", report.divergences.size() - 1 - shown);
  }
  return 1;
}

}  // namespace

void add_fidelity(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<FidelityOptions>();
  CLI::App* cmd = app.add_subcommand("fidelity", "Compare a replay's tape with the recording's");
  cmd->footer(
      "Compares two tapes step by step and names every record where they diverge, with the\n"
      "first divergence shown side by side. Exit 0 when nothing diverges, 1 when something\n"
      "does, 2 when a tape cannot be read.\n\n"
      "Modes:\n"
      "  byte-identical  every field, seq and both clocks included\n"
      "  semantic        what the run consumed and did; seq, clocks and process durations may\n"
      "                  drift, content hashes still gate (the default)\n"
      "  outcome         final files written, exit code of the last subprocess, LLM call count\n"
      "  phase-aware     user_script strict, runtime_finalize semantic, its clock reads ignored\n\n"
      "Example:\n"
      "  tapedeck fidelity recorded.tape replay.tape --mode byte-identical");
  cmd->add_option("RECORDED", options->recorded, "The recording's tape")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("REPLAY", options->replay, "The replay's tape")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--mode", options->mode, "byte-identical, semantic, outcome or phase-aware")
      ->check(CLI::IsMember({"byte-identical", "semantic", "outcome", "phase-aware"}))
      ->capture_default_str();
  cmd->add_flag("--json", options->json,
                "One JSON object: mode, record counts, score, every divergence");
  cmd->add_option("--list", options->list, "How many divergences to list after the first")
      ->capture_default_str();
  cmd->callback([options, &exit_code] { exit_code = run_fidelity(*options); });
}

}  // namespace tapedeck::cli
