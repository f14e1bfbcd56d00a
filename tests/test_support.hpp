// Helpers shared by the unit tests: temporary folders and whole-file reads.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "tapedeck/tape.hpp"

namespace tapedeck::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tapedeck-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Appends a record of `kind` to an in-memory tape, with the next seq.
inline void append_record(Tape& tape, RecordKind kind) {
  Record record;
  record.seq = tape.records.size();
  record.kind = std::move(kind);
  tape.records.push_back(std::move(record));
}

inline const std::string kHeaderLine =
    R"({"type":"header","version":1,"harn_version":"t","started_at_unix_ms":null,"script_path":null,"argv":[]})"
    "\n";

}  // namespace tapedeck::testing
