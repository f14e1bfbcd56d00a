// The content-addressed sidecar: NAME.tape.cas/<lowercase hex BLAKE3 of the bytes>.
// Every function refuses a name that is not 64 lowercase hex characters before touching a path.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace tapedeck::cas {

// The entry's bytes, checked against its name. Throws TapeError (invalid name, missing,
// unreadable, or bytes that do not hash to the name).
std::string read_entry(const std::filesystem::path& dir, std::string_view name);

// Writes the entries that are not there yet, each whole or not at all (temporary file, then
// rename). An entry already present under its name is left alone: same name, same bytes.
// `durable` flushes the data to disk before the renames.
void write_entries(const std::filesystem::path& dir,
                   const std::map<std::string, std::string>& entries, bool durable = true);

enum class Carried { linked, copied, already_present };
// Makes entry `name` of `from_dir` present in `to_dir`: a hard link where the file system allows
// it, else a copy. Throws TapeError when the name is invalid or the source entry is missing.
Carried carry_entry(const std::filesystem::path& from_dir, const std::filesystem::path& to_dir,
                    std::string_view name);

// carry_entry for many entries between the same two folders. Both stay open, so an entry costs
// one linkat of its bare name (no walk of either path, no check of the target folder).
class Carrier {
 public:
  Carrier(std::filesystem::path from_dir, std::filesystem::path to_dir);
  ~Carrier();
  Carrier(const Carrier&) = delete;
  Carrier& operator=(const Carrier&) = delete;
  Carried carry(std::string_view name);

 private:
  std::filesystem::path from_dir_, to_dir_;
  int from_fd_ = -1, to_fd_ = -1;  // opened at the first carry; to_dir_ is made then
};

enum class Problem { none, invalid_name, missing, unreadable, hash_mismatch, length_mismatch };
struct Check {
  Problem problem = Problem::none;
  std::string detail;  // empty when problem == none
};
// Checks one entry: present, hashing to its name, and `expected_len` bytes long (when known).
Check check_entry(const std::filesystem::path& dir, std::string_view name,
                  std::optional<uint64_t> expected_len);
std::string_view to_string(Problem problem);

}  // namespace tapedeck::cas
