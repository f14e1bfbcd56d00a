// tapedeck's extension records: kinds the reference format does not have, which its readers keep
// as unknown kinds and tapedeck's read back. The one place that writes and reads them.
//
//   entropy      {"kind":"entropy","seed":"<64 hex>"}: the seed of the run's randomness;
//                `"threads":true` (written only when true): each thread a process started draws
//                from a stream of its own (tapes before it: threads share their process's);
//                `"keeps":["file_bytes","printed_output"]` (after `threads`): the writer keeps
//                those bytes in the sidecar for every record that names them, so a sidecar
//                without one of them is a tape a replay cannot use (`verify` fails it). Tapes
//                without it (the reference's, tapedeck's before 0.3) keep file hashes as digests.
//   outcome      {"kind":"outcome","exit_code":N,"stdout":{"content_hash":…,"len_bytes":N},
//                 "stderr":{…}}: how the program ended, what it printed; `"kept":false` after an
//                 output's len_bytes: too large to keep, its bytes are not in the sidecar
//   folder_made     {"kind":"folder_made","path":"…","mode":493}: a folder a subprocess made,
//                   with its permission bits (tapes before 0.2 have no mode)
//   folder_removed  {"kind":"folder_removed","path":"…"}: a folder a subprocess removed, with
//                   everything in it
//   symlink_made    {"kind":"symlink_made","path":"…","target":"…"}: a symbolic link a subprocess
//                   made (or pointed elsewhere); the target is kept as the link holds it
//   hard_link_made  {"kind":"hard_link_made","path":"…","existing":"…"}: a second name a
//                   subprocess gave a workspace file
//   mode_set        {"kind":"mode_set","path":"…","mode":448}: permission bits a subprocess set
//                   on a file or folder that was there before
// A replay makes these again in its view, in tape order, right after the subprocess's spawn;
// the modes of folders it made last (a folder made read-only still takes its files first).
//
// (The others are fields of known kinds: `by_subprocess` and `mode` on file records, `code` on a
// file read, `waited` on a sleep, `lane` on a clock read, `pids` and `started` on a spawn: see
// tape.hpp.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tapedeck/tape.hpp"

namespace tapedeck::extension {

struct ProgramOutcome {
  int64_t exit_code = 0;
  std::string stdout_hash;
  uint64_t stdout_size = 0;
  std::string stderr_hash;
  uint64_t stderr_size = 0;
  // False when the output was too large to keep: the hash names bytes that are not in the sidecar.
  bool stdout_kept = true;
  bool stderr_kept = true;
};

// What a writer that says so keeps in its tape's sidecar for every record naming it (an empty
// output's bytes excepted: they are no entry). LLM requests are not among them: one that holds a
// credential is withheld.
inline constexpr Reference kKeptByRun[] = {Reference::file_bytes, Reference::printed_output};

// `keeps`: the tape's sidecar holds every entry of the kinds in kKeptByRun its records name.
kind::Unknown entropy_record(std::string_view seed_hex, bool per_thread = false,
                             bool keeps = false);
kind::Unknown outcome_record(const ProgramOutcome& outcome);
kind::Unknown folder_made_record(std::string_view path);

// A change a subprocess made to the workspace's tree beyond a file's bytes (file_write) and a
// file's removal (file_delete).
struct TreeChange {
  enum class Kind { folder_made, folder_removed, symlink_made, hard_link_made, mode_set };
  Kind kind = Kind::folder_made;
  std::string path;
  std::optional<uint32_t> mode;  // folder_made (none on older tapes), mode_set
  std::string other;             // symlink_made: the target; hard_link_made: the existing path
};
kind::Unknown tree_change_record(const TreeChange& change);

// What such a record holds; nullopt for any other record (or a malformed one).
std::optional<std::string> entropy_seed(const kind::Unknown& record);
// Whether an entropy record gives each thread a stream of its own.
bool entropy_per_thread(const kind::Unknown& record);
// The references an entropy record says its tape keeps the bytes of (empty: it does not say).
std::vector<Reference> entropy_keeps(const kind::Unknown& record);
std::optional<ProgramOutcome> program_outcome(const kind::Unknown& record);
std::optional<std::string> made_folder(const kind::Unknown& record);
// Nullopt for any other record, or one malformed (a mode past 07777, a field missing).
std::optional<TreeChange> tree_change(const kind::Unknown& record);
// Whether `name` is one of TreeChange's kinds (well formed or not).
bool is_tree_change_kind(std::string_view name);
// A record a subprocess's change to the workspace was taped as, right after its spawn: a file
// written or deleted `by_subprocess`, or a TreeChange.
bool is_subprocess_change(const RecordKind& kind);

}  // namespace tapedeck::extension
