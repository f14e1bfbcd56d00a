#include <fmt/core.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/pack.hpp"
#include "tapedeck/secrets.hpp"
#include "tapedeck/tape_paths.hpp"

namespace tapedeck::cli {

namespace {

struct VerifyOptions {
  std::string in;
  bool json = false;
  bool repair = false;
};

struct Problem {
  std::optional<uint64_t> seq;  // none for a problem of the file rather than of a record
  uint64_t line;
  std::string category;
  std::string message;
};

struct CasReference {
  std::optional<uint64_t> len_bytes;
  uint64_t first_seq;
  uint64_t first_line;
  Reference reference;
  std::string what;  // the record that names it, for the problem's message
};

// `repaired`: what an earlier pass already repaired (an interrupted scrub finished).
int run_verify(const VerifyOptions& options, std::string repaired = {}) {
  if (options.repair && pack::is_packed_tape(options.in)) {
    throw std::runtime_error(options.in +
                             ": a packed tape is repaired unpacked (`tapedeck unpack`, "
                             "`verify --repair`, `pack` again)");
  }
  // Streaming: a tape of any size verifies in constant memory plus one entry per CAS name.
  auto reader = TapeReader::open(options.in);
  const bool finished_scrub = !repaired.empty();
  std::vector<Problem> problems;
  std::map<std::string, CasReference> cas_refs;
  uint64_t records = 0;
  // A tape `tapedeck run` or `replay` wrote (an entropy record first) names workspace paths
  // relative; the reference's runtime names them absolute, which no replay applies.
  PathRule path_rule = PathRule::any_writer;
  // What the tape says its sidecar keeps for every record (a run's and a replay's tapes say).
  std::vector<Reference> kept;
  while (const Record* record = reader->read()) {
    ++records;
    if (const auto* unknown = std::get_if<kind::Unknown>(&record->kind);
        records == 1 && unknown != nullptr && unknown->name == "entropy") {
      path_rule = PathRule::workspace;
      kept = extension::entropy_keeps(*unknown);
    }
    // A path that could lead a replay outside its view: the tape is refused by replay and check.
    if (auto why = record_path_problem(record->kind, path_rule)) {
      problems.push_back({record->seq, reader->line_number(), "unsafe_path", std::move(*why)});
    }
    for_each_reference(record->kind, [&](const std::string& name, std::optional<uint64_t> len,
                                         Reference reference) {
      std::string what = std::string(kind_name(record->kind));
      if (const auto* read = std::get_if<kind::FileRead>(&record->kind)) {
        what += " " + json_string(read->path);
      } else if (const auto* write = std::get_if<kind::FileWrite>(&record->kind)) {
        what += " " + json_string(write->path);
      }
      auto [it, fresh] = cas_refs.try_emplace(
          name, CasReference{len, record->seq, reader->line_number(), reference, what});
      if (!fresh && len && it->second.len_bytes && *it->second.len_bytes != *len &&
          reference == Reference::payload) {
        problems.push_back({record->seq, reader->line_number(), "cas_length_conflict",
                            fmt::format("CAS entry {} is named with {} bytes here but {} at "
                                        "seq {}",
                                        name, *len, *it->second.len_bytes, it->second.first_seq)});
      }
    });
    for_each_payload(record->kind, [&](const Payload& payload) {
      if (payload.in_cas()) return;
      if (const std::string actual = content_hash(payload.text); actual != payload.content_hash) {
        problems.push_back({record->seq, reader->line_number(), "inline_hash_mismatch",
                            fmt::format("inline payload's content_hash {} is not the BLAKE3 of "
                                        "its text ({})",
                                        short_hash(payload.content_hash, 64), short_hash(actual))});
      }
    });
  }
  auto note_repair = [&](const std::string& what) {
    repaired += (repaired.empty() ? "" : "; ") + what;
  };
  if (const auto& torn = reader->torn_tail()) {
    // A compressed tape whose last frame was left open may have lost no line at all.
    const std::string what = torn->bytes > 0 || !torn->compressed
                                 ? fmt::format("the last line ({} bytes) is cut short", torn->bytes)
                                 : std::string("the last zstd frame is not closed");
    if (options.repair) {
      repair_torn_tail(options.in, *torn);
      note_repair(torn->bytes > 0 || !torn->compressed
                      ? fmt::format("removed the torn last line ({} bytes at line {})", torn->bytes,
                                    torn->line)
                      : std::string("closed the last zstd frame, every line kept"));
    } else {
      problems.push_back({std::nullopt, torn->line, "torn_tail",
                          what + ": a recording was stopped mid-write; `tapedeck verify --repair` "
                                 "repairs it, keeping every whole record"});
    }
  }
  // A scrub of credentials learned late that a kill stopped (its journal is still there): the
  // values it names may still be on the tape. --repair finishes it, then verifies what it left.
  const std::vector<std::string> pending = secrets::pending_scrub(options.in);
  if (!pending.empty() && options.repair && !finished_scrub) {
    const secrets::ScrubReport report = secrets::scrub_tape(options.in);
    note_repair(
        fmt::format("finished a stopped scrub of {} late credential(s): {} occurrence(s) "
                    "redacted, {} old sidecar entr(ies) removed",
                    pending.size(), report.credentials, report.removed));
    return run_verify(options, repaired);
  }
  warn_if_scrub_stopped(options.in, pending);

  // A payload must be in the sidecar, and so must every entry of a kind the tape says it keeps.
  // The other references are checked when they are there. A tape that does not say (the
  // reference's, which names file hashes as digests; tapedeck's before it said) is held to its
  // sidecar's own evidence: when it keeps some file's bytes it must keep them all.
  const std::filesystem::path cas_dir = cas_dir_for(options.in);
  auto is_kept = [&](Reference reference) {
    return std::find(kept.begin(), kept.end(), reference) != kept.end();
  };
  std::vector<const std::pair<const std::string, CasReference>*> missing_file_bytes;
  bool keeps_file_bytes = false;
  for (const auto& entry : cas_refs) {
    const auto& [name, ref] = entry;
    // The empty output is named by its hash but is no entry.
    const bool required = ref.reference == Reference::payload ||
                          (is_kept(ref.reference) && ref.len_bytes.value_or(1) > 0);
    if (!required && !is_valid_cas_name(name)) continue;
    cas::Check check = cas::check_entry(cas_dir, name, ref.len_bytes);
    if (!required && check.problem == cas::Problem::missing) {
      if (ref.reference == Reference::file_bytes) missing_file_bytes.push_back(&entry);
      continue;
    }
    if (ref.reference == Reference::file_bytes) keeps_file_bytes = true;
    if (check.problem == cas::Problem::missing && ref.reference != Reference::payload) {
      problems.push_back({ref.first_seq, ref.first_line, "cas_missing",
                          "sidecar entry " + short_hash(name) + " (" +
                              std::string(to_string(ref.reference)) + " of " + ref.what +
                              ") is missing from " + cas_dir.filename().string() +
                              ", which the tape says keeps them all: a replay cannot use it"});
    } else if (check.problem != cas::Problem::none) {
      problems.push_back(
          {ref.first_seq, ref.first_line, "cas_" + std::string(cas::to_string(check.problem)),
           check.detail + " (" + std::string(to_string(ref.reference)) + " of " + ref.what + ")"});
    }
  }
  if (keeps_file_bytes) {
    for (const auto* entry : missing_file_bytes) {
      const auto& [name, ref] = *entry;
      problems.push_back({ref.first_seq, ref.first_line, "cas_missing",
                          "the bytes of " + ref.what + " (" + short_hash(name) +
                              ") are missing from the sidecar, which keeps its other files' "
                              "bytes: a replay cannot serve them"});
    }
  }

  // Sidecar entries no record names that hold a credential: what a scrub (scan --redact, a
  // run's late scrub) stopped before removing. Not a problem of the tape; --repair removes them.
  const std::vector<std::filesystem::path> leftover_entries = secrets::leftover_credential_entries(
      options.in, [&](const std::string& name) { return cas_refs.contains(name); }, pending);
  const uint64_t leftovers = leftover_entries.size();
  if (options.repair) {
    std::error_code ignored;
    for (const std::filesystem::path& entry : leftover_entries) {
      std::filesystem::remove(entry, ignored);
    }
  }
  if (leftovers > 0 && options.repair) {
    note_repair(fmt::format("removed {} sidecar entr(ies) no record names that held a credential",
                            leftovers));
  } else if (leftovers > 0) {
    print_warning(
        fmt::format("{}: {} sidecar entr(ies) no record names hold a credential (a "
                    "scrub was stopped?); `tapedeck verify --repair` removes them",
                    options.in, leftovers));
  }

  // In the tape's order, whatever check found them.
  std::stable_sort(problems.begin(), problems.end(),
                   [](const Problem& a, const Problem& b) { return a.line < b.line; });
  if (options.json) {
    std::string out = fmt::format(
        R"({{"path":{},"ok":{},"records":{},"cas_entries":{},"repaired":{},"problems":[)",
        json_string(options.in), problems.empty() ? "true" : "false", records, cas_refs.size(),
        repaired.empty() ? "null" : json_string(repaired));
    for (size_t i = 0; i < problems.size(); ++i) {
      const Problem& p = problems[i];
      out += fmt::format(R"({}{{"seq":{},"line":{},"category":{},"message":{}}})", i ? "," : "",
                         p.seq ? std::to_string(*p.seq) : "null", p.line, json_string(p.category),
                         json_string(p.message));
    }
    out += "]}\n";
    fmt::print("{}", out);
  } else {
    if (!repaired.empty()) fmt::print("{}: repaired: {}\n", options.in, repaired);
    for (const Problem& p : problems) {
      fmt::print("{}:{}: {}{}: {}\n", options.in, p.line,
                 p.seq ? fmt::format("seq {}: ", *p.seq) : std::string(), p.category, p.message);
    }
    fmt::print("{}: {} records, {} CAS entries: {}\n", options.in, records, cas_refs.size(),
               problems.empty() ? "ok" : fmt::format("{} problem(s)", problems.size()));
  }
  return problems.empty() ? 0 : 1;
}

}  // namespace

void add_verify(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<VerifyOptions>();
  CLI::App* cmd = app.add_subcommand(
      "verify", "Check that a tape parses and that its payloads and CAS entries are intact");
  cmd->footer(
      "Check a tape: every line parses, every inline payload hashes to its content_hash, every\n"
      "CAS entry a record names is present in IN.cas, hashes to its name and has the length\n"
      "the record says. A tape `run` or `replay` wrote says what its sidecar keeps (files'\n"
      "bytes, printed output): each of those entries missing is cas_missing, naming the record,\n"
      "since a replay cannot use the tape. Every problem is listed, not just the first. A last "
      "line cut short (a\n"
      "recording stopped mid-write) is reported as torn_tail; --repair truncates it away.\n"
      "Sidecar entries no record names that hold a credential (a scrub that was stopped) are\n"
      "named in a warning; --repair removes them. So is a scrub of credentials learned during\n"
      "a run that a kill stopped (its journal, IN.scrub, is still there); --repair finishes it.\n"
      "Exit 0 when clean, 1 when problems were found, 2 when the tape cannot be read.\n\n"
      "Example:\n"
      "  tapedeck verify run.tape --json | jq .problems");
  cmd->add_option("IN", options->in, "Tape to check")->required()->check(CLI::ExistingFile);
  cmd->add_flag("--json", options->json, "One JSON object: ok, records, cas_entries, problems");
  cmd->add_flag("--repair", options->repair,
                "Truncate a torn last line (every whole record before it is kept), finish a "
                "stopped scrub and remove sidecar entries no record names that hold a "
                "credential");
  cmd->callback([options, &exit_code] { exit_code = run_verify(*options); });
}

}  // namespace tapedeck::cli
