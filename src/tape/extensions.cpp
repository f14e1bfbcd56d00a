#include "tapedeck/extensions.hpp"

#include <algorithm>
#include <iterator>

#include <simdjson.h>

#include "tapedeck/codec.hpp"

namespace tapedeck::extension {

namespace {

// The record's JSON, parsed, when it is of kind `name`.
std::optional<simdjson::dom::element> parsed(const kind::Unknown& record, std::string_view name,
                                             simdjson::dom::parser& parser) {
  simdjson::dom::element root;
  if (record.name != name || parser.parse(record.raw_json).get(root)) return std::nullopt;
  return root;
}

std::string output_json(const std::string& hash, uint64_t size, bool kept) {
  return R"({"content_hash":)" + json_string(hash) + R"(,"len_bytes":)" + std::to_string(size) +
         (kept ? "}" : R"(,"kept":false})");
}

// The wire names of what a writer keeps, as `keeps` lists them.
std::string_view kept_name(Reference reference) {
  switch (reference) {
    case Reference::file_bytes:
      return "file_bytes";
    case Reference::printed_output:
      return "printed_output";
    case Reference::llm_request:
      return "llm_request";
    case Reference::payload:
      break;
  }
  return "payload";
}

}  // namespace

kind::Unknown entropy_record(std::string_view seed_hex, bool per_thread, bool keeps) {
  std::string json = R"({"kind":"entropy","seed":)" + json_string(seed_hex);
  if (per_thread) json += R"(,"threads":true)";
  if (keeps) {
    json += R"(,"keeps":[)";
    for (const Reference reference : kKeptByRun) {
      if (json.back() != '[') json += ',';
      json += '"' + std::string(kept_name(reference)) + '"';
    }
    json += ']';
  }
  return {"entropy", json + "}"};
}

kind::Unknown outcome_record(const ProgramOutcome& outcome) {
  return {"outcome",
          R"({"kind":"outcome","exit_code":)" + std::to_string(outcome.exit_code) +
              R"(,"stdout":)" +
              output_json(outcome.stdout_hash, outcome.stdout_size, outcome.stdout_kept) +
              R"(,"stderr":)" +
              output_json(outcome.stderr_hash, outcome.stderr_size, outcome.stderr_kept) + "}"};
}

kind::Unknown folder_made_record(std::string_view path) {
  return {"folder_made", R"({"kind":"folder_made","path":)" + json_string(path) + "}"};
}

namespace {
constexpr std::string_view kTreeChangeNames[] = {"folder_made", "folder_removed", "symlink_made",
                                                 "hard_link_made", "mode_set"};
}  // namespace

kind::Unknown tree_change_record(const TreeChange& change) {
  const std::string_view name = kTreeChangeNames[static_cast<int>(change.kind)];
  std::string json = R"({"kind":")" + std::string(name) + R"(","path":)" + json_string(change.path);
  switch (change.kind) {
    case TreeChange::Kind::symlink_made:
      json += R"(,"target":)" + json_string(change.other);
      break;
    case TreeChange::Kind::hard_link_made:
      json += R"(,"existing":)" + json_string(change.other);
      break;
    default:
      break;
  }
  if (change.mode) json += R"(,"mode":)" + std::to_string(*change.mode);
  return {std::string(name), json + "}"};
}

bool is_tree_change_kind(std::string_view name) {
  return std::find(std::begin(kTreeChangeNames), std::end(kTreeChangeNames), name) !=
         std::end(kTreeChangeNames);
}

bool is_subprocess_change(const RecordKind& kind) {
  if (const auto* write = std::get_if<kind::FileWrite>(&kind)) return write->by_subprocess;
  if (const auto* gone = std::get_if<kind::FileDelete>(&kind)) return gone->by_subprocess;
  const auto* unknown = std::get_if<kind::Unknown>(&kind);
  return unknown != nullptr && tree_change(*unknown).has_value();
}

std::optional<TreeChange> tree_change(const kind::Unknown& record) {
  TreeChange change;
  bool named = false;
  for (size_t i = 0; i < std::size(kTreeChangeNames); ++i) {
    if (record.name == kTreeChangeNames[i]) {
      change.kind = static_cast<TreeChange::Kind>(i);
      named = true;
    }
  }
  if (!named) return std::nullopt;
  simdjson::dom::parser parser;
  const auto root = parsed(record, record.name, parser);
  std::string_view path;
  if (!root || (*root)["path"].get(path)) return std::nullopt;
  change.path = path;
  uint64_t mode = 0;
  const auto mode_error = (*root)["mode"].get(mode);
  if (!mode_error) {
    if (mode > 07777) return std::nullopt;
    change.mode = static_cast<uint32_t>(mode);
  } else if (mode_error != simdjson::NO_SUCH_FIELD || change.kind == TreeChange::Kind::mode_set) {
    return std::nullopt;
  }
  std::string_view other;
  if (change.kind == TreeChange::Kind::symlink_made) {
    if ((*root)["target"].get(other)) return std::nullopt;
  } else if (change.kind == TreeChange::Kind::hard_link_made) {
    if ((*root)["existing"].get(other)) return std::nullopt;
  }
  change.other = other;
  return change;
}

std::optional<std::string> entropy_seed(const kind::Unknown& record) {
  simdjson::dom::parser parser;
  std::string_view seed;
  const auto root = parsed(record, "entropy", parser);
  if (!root || (*root)["seed"].get(seed) || seed.size() != 64 ||
      seed.find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return std::nullopt;
  }
  return std::string(seed);
}

bool entropy_per_thread(const kind::Unknown& record) {
  simdjson::dom::parser parser;
  bool per_thread = false;
  const auto root = parsed(record, "entropy", parser);
  return root && !(*root)["threads"].get(per_thread) && per_thread;
}

std::vector<Reference> entropy_keeps(const kind::Unknown& record) {
  simdjson::dom::parser parser;
  simdjson::dom::array names;
  const auto root = parsed(record, "entropy", parser);
  if (!root || (*root)["keeps"].get(names)) return {};
  std::vector<Reference> keeps;
  for (simdjson::dom::element element : names) {
    std::string_view name;
    if (element.get(name)) continue;
    for (const Reference reference : kKeptByRun) {
      if (kept_name(reference) == name) keeps.push_back(reference);
    }
  }
  return keeps;
}

std::optional<ProgramOutcome> program_outcome(const kind::Unknown& record) {
  simdjson::dom::parser parser;
  const auto root = parsed(record, "outcome", parser);
  if (!root) return std::nullopt;
  ProgramOutcome outcome;
  std::string_view stdout_hash, stderr_hash;
  if ((*root)["exit_code"].get(outcome.exit_code) ||
      (*root)["stdout"]["content_hash"].get(stdout_hash) ||
      (*root)["stdout"]["len_bytes"].get(outcome.stdout_size) ||
      (*root)["stderr"]["content_hash"].get(stderr_hash) ||
      (*root)["stderr"]["len_bytes"].get(outcome.stderr_size)) {
    return std::nullopt;
  }
  outcome.stdout_hash = stdout_hash;
  outcome.stderr_hash = stderr_hash;
  // Kept unless it says otherwise (tapes before `kept` kept every output they could).
  auto kept = [&](const char* stream) {
    bool value = true;
    return (*root)[stream]["kept"].get(value) != simdjson::SUCCESS || value;
  };
  outcome.stdout_kept = kept("stdout");
  outcome.stderr_kept = kept("stderr");
  return outcome;
}

std::optional<std::string> made_folder(const kind::Unknown& record) {
  simdjson::dom::parser parser;
  std::string_view path;
  const auto root = parsed(record, "folder_made", parser);
  if (!root || (*root)["path"].get(path)) return std::nullopt;
  return std::string(path);
}

}  // namespace tapedeck::extension
