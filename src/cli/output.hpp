// Small helpers shared by the subcommands' human and JSON output.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tapedeck::cli {

// "12 B", "4.0 KiB", "1.5 MiB": sizes a person reads at a glance.
std::string human_bytes(uint64_t bytes);
// The first `keep` characters of a hash, for people.
std::string short_hash(std::string_view hash, size_t keep = 12);
// Prints "tapedeck: <what>" on stderr as one line.
void print_error(std::string_view what);
void print_warning(std::string_view what);

}  // namespace tapedeck::cli

namespace tapedeck {
class TapeReader;
}

namespace tapedeck::cli {

// Warns when the reader stopped before a torn last line (a recording cut off mid-write).
void warn_if_torn(const TapeReader& reader);
// Warns when `tape` has a scrub journal: a scrub of `pending` (its values) a kill stopped.
void warn_if_scrub_stopped(const std::string& tape, const std::vector<std::string>& pending);

}  // namespace tapedeck::cli
