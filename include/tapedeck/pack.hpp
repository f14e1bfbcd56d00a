// A packed tape: the tape, its sidecar entries and its manifest in one file, for teams that
// commit recordings (one thing to add, review and keep together).
//
// The file is a POSIX tar archive (pax), compressed with zstd (`tar --zstd -tf X.tdk` lists it),
// written by libarchive with fixed times and owners so that the same tape packs to the same
// bytes. Its members, in this order: NAME.tape (the canonical tape), NAME.tape.manifest (when the
// tape has one), NAME.tape.cas/<BLAKE3> for every sidecar entry a record names. Every command
// reads a pack where it reads a tape: the first time a process meets one, it unpacks it into a
// private temporary folder it removes when it ends (read_view), and TapeReader::open, cas_dir_for
// and the manifest's reader go there. A pack is untrusted input like a tape: a member of any
// other name or type is refused before anything is written.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace tapedeck::pack {

// Whether the file at `path` is a pack (a zstd-compressed tar), told by its bytes.
bool is_packed_tape(const std::filesystem::path& path);

struct PackReport {
  uint64_t records = 0;
  uint64_t entries = 0;      // sidecar entries packed
  uint64_t entry_bytes = 0;  // their bytes before compression
  uint64_t tape_bytes = 0;   // the canonical tape's bytes before compression
};

// Packs `tape` (plain, compressed or packed) into `out`, atomically. `manifest_json`: the
// manifest's text as it is to be read beside `out` (the caller makes its paths relative to out's
// folder). Throws TapeError, leaving nothing at `out`, when an entry a record names must be kept
// but is missing (a payload, or bytes the tape says it keeps), or when a line of the tape or an
// entry holds a credential (`tapedeck scan --redact` first): a pack never holds one unredacted.
PackReport pack_tape(const std::filesystem::path& tape, const std::filesystem::path& out,
                     const std::optional<std::string>& manifest_json);

// A pack unpacked for reading in this process.
struct ReadView {
  std::filesystem::path tape;      // NAME.tape in a private temporary folder
  std::filesystem::path sidecar;   // NAME.tape.cas beside it (may not exist: no entries)
  std::filesystem::path manifest;  // NAME.tape.manifest beside it (may not exist)
};
// Unpacks `pack` the first time it is asked for (again when the file changed), into a folder
// removed when the process ends. Throws TapeError naming the pack and the member it refuses.
const ReadView& read_view(const std::filesystem::path& pack);

// Unpacks `pack` into `dir` as NAME.tape, NAME.tape.cas/ and NAME.tape.manifest (the manifest
// as packed: the caller rewrites its paths for `dir`). Returns NAME.tape's path. Throws TapeError
// when NAME.tape is there already and `overwrite` is false.
std::filesystem::path unpack(const std::filesystem::path& pack, const std::filesystem::path& dir,
                             bool overwrite);

}  // namespace tapedeck::pack
