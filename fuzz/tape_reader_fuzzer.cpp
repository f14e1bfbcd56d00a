// libFuzzer target for the reader. Beyond "no crash, no sanitizer report", it checks the codec's
// central property on every input the reader accepts: the canonical encoding reads back, and
// encoding it again gives the same bytes (canonical form is a fixed point).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"

namespace {

std::string canonical(std::string_view input, const char* name) {
  auto reader = tapedeck::TapeReader::from_memory(input, name);
  tapedeck::LineBuffer out;
  out.append_header(reader->header());
  tapedeck::Record record;
  while (reader->next(record)) out.append_record(record);
  return std::string(out.view());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string first;
  try {
    first = canonical(input, "fuzz-input");
  } catch (const tapedeck::TapeError&) {
    return 0;  // refusing bad input is the reader's job
  }
  // An exception here escapes and is reported as a crash: canonical output must always read.
  const std::string second = canonical(first, "fuzz-canonical");
  if (second != first) std::abort();
  return 0;
}
