// Decodes one tape line with simdjson's On-Demand API. Internal to the tape room.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "tapedeck/error.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::detail {

// Bytes simdjson may read past the end of a line: callers keep that much readable memory after it.
size_t decoder_padding();

// What is wrong with a line, without the file and line number (the reader adds them).
class LineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LineDecoder {
 public:
  enum class LineType { header, record };

  LineDecoder();
  ~LineDecoder();
  LineDecoder(const LineDecoder&) = delete;
  LineDecoder& operator=(const LineDecoder&) = delete;

  // `line` has no newline; at least decoder_padding() bytes after it must be readable.
  // Fills `header` or `record` (reusing its storage) and says which; throws LineError.
  LineType decode(std::string_view line, Header& header, Record& record);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Strips the line's trailing '\r' and answers whether anything but whitespace is left.
bool trim_line(std::string_view& line);

// Decodes a line that must be a record (a header past the first line is an error). Throws
// TapeError naming `source` and `line_number`.
void decode_record_line(LineDecoder& decoder, std::string_view line, const std::string& source,
                        uint64_t line_number, Record& record);

}  // namespace tapedeck::detail
