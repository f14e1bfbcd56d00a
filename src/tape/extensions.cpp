#include "tapedeck/extensions.hpp"

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

std::string output_json(const std::string& hash, uint64_t size) {
  return R"({"content_hash":)" + json_string(hash) + R"(,"len_bytes":)" + std::to_string(size) +
         "}";
}

}  // namespace

kind::Unknown entropy_record(std::string_view seed_hex) {
  return {"entropy", R"({"kind":"entropy","seed":)" + json_string(seed_hex) + "}"};
}

kind::Unknown outcome_record(const ProgramOutcome& outcome) {
  return {"outcome", R"({"kind":"outcome","exit_code":)" + std::to_string(outcome.exit_code) +
                         R"(,"stdout":)" + output_json(outcome.stdout_hash, outcome.stdout_size) +
                         R"(,"stderr":)" + output_json(outcome.stderr_hash, outcome.stderr_size) +
                         "}"};
}

kind::Unknown folder_made_record(std::string_view path) {
  return {"folder_made", R"({"kind":"folder_made","path":)" + json_string(path) + "}"};
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
