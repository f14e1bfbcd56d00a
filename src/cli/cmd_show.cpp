#include <fmt/core.h>

#include <type_traits>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/extensions.hpp"

namespace tapedeck::cli {

namespace {

struct ShowOptions {
  std::string in;
  std::string kind;
  std::string phase;
  bool json = false;
};

std::string describe_payload(const Payload& payload) {
  if (payload.in_cas()) {
    return fmt::format("{} in CAS {}", human_bytes(payload.cas_len_bytes),
                       short_hash(payload.content_hash));
  }
  return fmt::format("{} inline", human_bytes(payload.text.size()));
}

std::string summarize(const RecordKind& kind) {
  return std::visit(
      [](const auto& k) -> std::string {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, kind::ClockRead>) {
          return fmt::format("{} = {} ms{}", to_string(k.source), k.value_ms,
                             k.lane.empty() ? "" : " (" + json_string(k.lane) + ")");
        } else if constexpr (std::is_same_v<K, kind::ClockSleep>) {
          return fmt::format("{} ms", k.duration_ms);
        } else if constexpr (std::is_same_v<K, kind::LlmCall>) {
          return fmt::format("request {} -> response {}", short_hash(k.request_digest),
                             describe_payload(k.response));
        } else if constexpr (std::is_same_v<K, kind::FileRead> ||
                             std::is_same_v<K, kind::FileWrite>) {
          std::string text = fmt::format("{} ({}, {})", json_string(k.path),
                                         human_bytes(k.len_bytes), short_hash(k.content_hash));
          if constexpr (std::is_same_v<K, kind::FileWrite>) {
            if (k.by_subprocess) text += " by a subprocess";
          } else {
            if (k.code) text += " code";
            if (k.found) text += " as found before the run changed it";
          }
          return text;
        } else if constexpr (std::is_same_v<K, kind::FileDelete>) {
          if (k.found) return json_string(k.path) + " not there before the run made it";
          return json_string(k.path) + (k.by_subprocess ? " by a subprocess" : "");
        } else if constexpr (std::is_same_v<K, kind::ProcessSpawn>) {
          std::string command = json_string(k.program);
          for (const std::string& arg : k.args) command += " " + json_string(arg);
          return fmt::format("{}{} -> exit {} in {} ms, stdout {}, stderr {}{}", command,
                             k.cwd ? " in " + json_string(*k.cwd) : std::string(), k.exit_code,
                             k.duration_ms, describe_payload(k.stdout_payload),
                             describe_payload(k.stderr_payload),
                             k.descended ? ", descended (the agent: runs again on replay)" : "");
        } else if (const auto outcome = extension::program_outcome(k)) {
          return fmt::format("program exit {}, stdout {} ({}), stderr {} ({})", outcome->exit_code,
                             human_bytes(outcome->stdout_size), short_hash(outcome->stdout_hash),
                             human_bytes(outcome->stderr_size), short_hash(outcome->stderr_hash));
        } else if (const auto seed = extension::entropy_seed(k)) {
          return "seed " + short_hash(*seed);
        } else if (const auto change = extension::tree_change(k)) {
          using Kind = extension::TreeChange::Kind;
          std::string text = json_string(change->path);
          if (change->kind == Kind::symlink_made) text += " -> " + json_string(change->other);
          if (change->kind == Kind::hard_link_made) {
            text += " (another name of " + json_string(change->other) + ")";
          }
          if (change->mode) text += fmt::format(" mode {:04o}", *change->mode);
          return text + " by a subprocess";
        } else {
          return k.raw_json.size() > 120 ? k.raw_json.substr(0, 120) + "…" : k.raw_json;
        }
      },
      kind);
}

int run_show(const ShowOptions& options) {
  auto reader = TapeReader::open(options.in);
  std::optional<Phase> phase;
  if (!options.phase.empty()) phase = parse_phase(options.phase);

  LineBuffer json_lines;
  uint64_t shown = 0;
  while (const Record* next = reader->read()) {
    const Record& record = *next;
    if (!options.kind.empty() && kind_name(record.kind) != options.kind) continue;
    if (phase && record.phase != *phase) continue;
    ++shown;
    if (options.json) {
      json_lines.append_record(record);
      if (json_lines.size() >= (1 << 20)) {
        fmt::print("{}", json_lines.view());
        json_lines.clear();
      }
    } else {
      fmt::print("{:>6}  {:<16}  vt {:>15}  mono {:>8}  {:<13}  {}\n", record.seq,
                 to_string(record.phase), record.virtual_time_ms, record.monotonic_ms,
                 kind_name(record.kind), summarize(record.kind));
    }
  }
  warn_if_torn(*reader);
  if (options.json) fmt::print("{}", json_lines.view());
  if (!options.json && shown == 0) fmt::print(stderr, "tapedeck show: no matching records\n");
  return 0;
}

}  // namespace

void add_show(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ShowOptions>();
  CLI::App* cmd = app.add_subcommand("show", "List a tape's records, filtered by kind or phase");
  cmd->footer(
      "List a tape's records, one line each: seq, phase, virtual and monotonic time, kind, and\n"
      "what happened. --json prints the matching records as canonical tape lines (NDJSON).\n\n"
      "Examples:\n"
      "  tapedeck show run.tape --kind llm_call\n"
      "  tapedeck show run.tape --phase runtime_finalize --json");
  cmd->add_option("IN", options->in, "Tape to read")->required()->check(CLI::ExistingFile);
  cmd->add_option("--kind", options->kind,
                  "Only records of this kind (clock_read, clock_sleep, llm_call, file_read, "
                  "file_write, file_delete, process_spawn, or an unknown kind's name)");
  cmd->add_option("--phase", options->phase, "Only records of this phase")
      ->check(CLI::IsMember({"user_script", "runtime_finalize"}));
  cmd->add_flag("--json", options->json, "Matching records as NDJSON, in the tape's encoding");
  cmd->callback([options, &exit_code] { exit_code = run_show(*options); });
}

}  // namespace tapedeck::cli
