#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"

namespace tapedeck::cli {

namespace {

struct StatsOptions {
  std::string in;
  bool json = false;
};

struct Stats {
  uint64_t records = 0;
  std::map<std::string, uint64_t> by_kind;
  uint64_t by_phase[2] = {0, 0};
  uint64_t inline_payloads = 0;
  uint64_t inline_bytes = 0;
  uint64_t cas_refs = 0;
  uint64_t cas_ref_bytes = 0;
  std::map<std::string, uint64_t> cas_unique;  // name -> length
  // The other sidecar entries the records name (file bytes, kept LLM requests, printed output):
  // distinct names by kind of reference; counted when present.
  std::map<Reference, std::set<std::string>> referenced;
  int64_t vt_min = std::numeric_limits<int64_t>::max();
  int64_t vt_max = std::numeric_limits<int64_t>::min();
  uint64_t sleep_ms = 0;
};

int run_stats(const StatsOptions& options) {
  auto reader = TapeReader::open(options.in);
  Stats stats;
  for (std::string_view name : known_kind_names()) stats.by_kind[std::string(name)] = 0;
  while (const Record* next = reader->read()) {
    const Record& record = *next;
    ++stats.records;
    ++stats.by_kind[std::string(kind_name(record.kind))];
    ++stats.by_phase[static_cast<int>(record.phase)];
    stats.vt_min = std::min(stats.vt_min, record.virtual_time_ms);
    stats.vt_max = std::max(stats.vt_max, record.virtual_time_ms);
    if (const auto* sleep = std::get_if<kind::ClockSleep>(&record.kind)) {
      stats.sleep_ms += sleep->duration_ms;
    }
    for_each_reference(record.kind,
                       [&](const std::string& name, std::optional<uint64_t>, Reference reference) {
                         if (reference != Reference::payload && is_valid_cas_name(name)) {
                           stats.referenced[reference].insert(name);
                         }
                       });
    for_each_payload(record.kind, [&](const Payload& payload) {
      if (payload.in_cas()) {
        ++stats.cas_refs;
        stats.cas_ref_bytes += payload.cas_len_bytes;
        stats.cas_unique.try_emplace(payload.content_hash, payload.cas_len_bytes);
      } else {
        ++stats.inline_payloads;
        stats.inline_bytes += payload.text.size();
      }
    });
  }
  warn_if_torn(*reader);
  // What the sidecar keeps beside the payloads: entries present, and their bytes.
  std::map<Reference, std::pair<uint64_t, uint64_t>> kept;
  const std::filesystem::path sidecar = cas_dir_for(options.in);
  for (const auto& [reference, names] : stats.referenced) {
    auto& [entries, bytes] = kept[reference];
    for (const std::string& name : names) {
      std::error_code error;
      const uint64_t size = std::filesystem::file_size(sidecar / name, error);
      if (error) continue;
      ++entries;
      bytes += size;
    }
  }
  auto kept_json = [&](Reference reference) {
    const auto& [entries, bytes] = kept[reference];
    return fmt::format(R"({{"entries":{},"bytes":{}}})", entries, bytes);
  };
  uint64_t cas_unique_bytes = 0;
  for (const auto& [name, len] : stats.cas_unique) cas_unique_bytes += len;
  const Header& header = reader->header();
  const bool has_time = stats.records > 0;
  // A span of i64 extremes does not fit in i64: compute it in u64.
  const uint64_t span =
      has_time ? static_cast<uint64_t>(stats.vt_max) - static_cast<uint64_t>(stats.vt_min) : 0;

  if (options.json) {
    std::string kinds;
    for (const auto& [name, count] : stats.by_kind) {
      kinds += fmt::format("{}{}:{}", kinds.empty() ? "" : ",", json_string(name), count);
    }
    std::string time = has_time ? fmt::format(R"({{"min":{},"max":{},"span":{}}})", stats.vt_min,
                                              stats.vt_max, span)
                                : "null";
    fmt::print(R"({{"path":{},"version":{},"harn_version":{},"records":{},"by_kind":{{{}}},)"
               R"("by_phase":{{"user_script":{},"runtime_finalize":{}}},)"
               R"("payloads":{{"inline":{},"inline_bytes":{},"cas_refs":{},"cas_ref_bytes":{},)"
               R"("cas_entries":{},"cas_entry_bytes":{}}},"file_bytes":{},"llm_requests":{},)"
               R"("printed_outputs":{},"virtual_time_ms":{},"sleep_ms":{}}})"
               "\n",
               json_string(options.in), header.version, json_string(header.harn_version),
               stats.records, kinds, stats.by_phase[0], stats.by_phase[1], stats.inline_payloads,
               stats.inline_bytes, stats.cas_refs, stats.cas_ref_bytes, stats.cas_unique.size(),
               cas_unique_bytes, kept_json(Reference::file_bytes),
               kept_json(Reference::llm_request), kept_json(Reference::printed_output), time,
               stats.sleep_ms);
    return 0;
  }

  fmt::print("tape          {} (format v{}, written by {})\n", options.in, header.version,
             header.harn_version);
  fmt::print("records       {} (user_script {}, runtime_finalize {})\n", stats.records,
             stats.by_phase[0], stats.by_phase[1]);
  for (const auto& [name, count] : stats.by_kind) {
    if (count > 0) fmt::print("  {:<14}{}\n", name, count);
  }
  fmt::print("payloads      {} inline ({}), {} in CAS ({} in {} distinct entries)\n",
             stats.inline_payloads, human_bytes(stats.inline_bytes), stats.cas_refs,
             human_bytes(stats.cas_ref_bytes), stats.cas_unique.size(),
             human_bytes(cas_unique_bytes));
  if (!kept.empty()) {
    std::string line;
    for (const auto& [reference, counts] : kept) {
      line += fmt::format("{}{} {} ({})", line.empty() ? "" : ", ", counts.first,
                          to_string(reference), human_bytes(counts.second));
    }
    fmt::print("sidecar also  {}\n", line);
  }
  if (has_time) {
    fmt::print("virtual time  {} .. {} ms (span {} ms; {} ms asleep)\n", stats.vt_min, stats.vt_max,
               span, stats.sleep_ms);
  } else {
    fmt::print("virtual time  none (no records)\n");
  }
  return 0;
}

}  // namespace

void add_stats(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<StatsOptions>();
  CLI::App* cmd = app.add_subcommand(
      "stats", "Summarize a tape: counts per kind and phase, payload bytes, virtual time");
  cmd->footer(
      "Summarize a tape: records per kind and phase, inline and CAS payload bytes, and the span\n"
      "of virtual time it covers.\n\n"
      "Example:\n"
      "  tapedeck stats run.tape --json");
  cmd->add_option("IN", options->in, "Tape to read")->required()->check(CLI::ExistingFile);
  cmd->add_flag("--json", options->json, "One JSON object instead of the table");
  cmd->callback([options, &exit_code] { exit_code = run_stats(*options); });
}

}  // namespace tapedeck::cli
