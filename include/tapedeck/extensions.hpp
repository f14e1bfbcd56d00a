// tapedeck's extension records: kinds the reference format does not have, which its readers keep
// as unknown kinds and tapedeck's read back. The one place that writes and reads them.
//
//   entropy      {"kind":"entropy","seed":"<64 hex>"}: the seed of the run's randomness
//   outcome      {"kind":"outcome","exit_code":N,"stdout":{"content_hash":…,"len_bytes":N},
//                 "stderr":{…}}: how the program ended, what it printed
//   folder_made  {"kind":"folder_made","path":"…"}: a folder a subprocess made
//
// (The others are fields of known kinds: `by_subprocess` and `mode` on file records, `code` on a
// file read, `waited` on a sleep, `lane` on a clock read, `pids` and `started` on a spawn: see
// tape.hpp.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tapedeck/tape.hpp"

namespace tapedeck::extension {

struct ProgramOutcome {
  int64_t exit_code = 0;
  std::string stdout_hash;
  uint64_t stdout_size = 0;
  std::string stderr_hash;
  uint64_t stderr_size = 0;
};

kind::Unknown entropy_record(std::string_view seed_hex);
kind::Unknown outcome_record(const ProgramOutcome& outcome);
kind::Unknown folder_made_record(std::string_view path);

// What such a record holds; nullopt for any other record (or a malformed one).
std::optional<std::string> entropy_seed(const kind::Unknown& record);
std::optional<ProgramOutcome> program_outcome(const kind::Unknown& record);
std::optional<std::string> made_folder(const kind::Unknown& record);

}  // namespace tapedeck::extension
