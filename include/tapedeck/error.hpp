// The one error type the tape library throws: it always names the file, and the line when known,
// so that a CLI can print it as a single line.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace tapedeck {

class TapeError : public std::runtime_error {
 public:
  // line 0 means "no particular line" (an I/O error, a CAS entry, …).
  TapeError(std::string file, uint64_t line, std::string detail);

  const std::string& file() const { return file_; }
  uint64_t line() const { return line_; }
  const std::string& detail() const { return detail_; }

 private:
  std::string file_;
  uint64_t line_;
  std::string detail_;
};

}  // namespace tapedeck
