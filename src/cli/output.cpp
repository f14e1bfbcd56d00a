#include "cli/output.hpp"

#include <fmt/core.h>

#include <cstdio>

#include "tapedeck/codec.hpp"
#include "tapedeck/secrets.hpp"

namespace tapedeck::cli {

std::string human_bytes(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  value /= 1024.0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string short_hash(std::string_view hash, size_t keep) {
  if (hash.size() <= keep) return std::string(hash);
  return std::string(hash.substr(0, keep)) + "…";
}

namespace {
// One line, whatever the message holds: a newline in a path must not split the report.
std::string one_line(std::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return line;
}
}  // namespace

void print_error(std::string_view what) {
  fmt::print(stderr, "tapedeck: error: {}\n", one_line(what));
}

void print_warning(std::string_view what) {
  fmt::print(stderr, "tapedeck: warning: {}\n", one_line(what));
}

void warn_if_torn(const TapeReader& reader) {
  if (const auto& torn = reader.torn_tail()) {
    print_warning(
        fmt::format("{}:{}: ignored a torn last line ({} bytes; a recording stopped "
                    "mid-write): `tapedeck verify --repair` removes it",
                    reader.source_name(), torn->line, torn->bytes));
  }
}

void warn_if_scrub_stopped(const std::string& tape, const std::vector<std::string>& pending) {
  if (pending.empty()) return;
  print_warning(
      fmt::format("{}: a scrub of {} credential(s) learned during the run was stopped "
                  "before it ended ({}): they may still be on the tape; `tapedeck "
                  "verify --repair` finishes it",
                  tape, pending.size(), secrets::scrub_journal_for(tape).string()));
}

}  // namespace tapedeck::cli
