// libFuzzer target for the reader. Beyond "no crash, no sanitizer report", it checks the codec's
// central property on every input the reader accepts: the canonical encoding reads back, and
// encoding it again gives the same bytes (canonical form is a fixed point). And on every line of
// every input: what the decoder's canonical fast path accepts, the full decoder reads as the same
// record, whose encoding is that very line.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tape/decode.hpp"
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

// Aborts when the fast path accepts a line the full decoder reads otherwise, or that is not the
// encoding of the record it produced.
void check_fast_path(std::string_view input) {
  tapedeck::detail::LineDecoder decoder;
  tapedeck::Record fast, full;
  tapedeck::Header header;
  std::string padded;
  while (!input.empty()) {
    const size_t newline = input.find('\n');
    std::string_view line = input.substr(0, newline);
    input.remove_prefix(newline == std::string_view::npos ? input.size() : newline + 1);
    if (!tapedeck::detail::decode_canonical_record(line, fast)) continue;
    padded.assign(line);
    padded.append(tapedeck::detail::decoder_padding(), '\0');
    try {
      if (decoder.decode(std::string_view(padded.data(), line.size()), header, full) !=
          tapedeck::detail::LineDecoder::LineType::record) {
        std::abort();
      }
    } catch (const tapedeck::detail::LineError&) {
      std::abort();  // the fast path took a line the full decoder refuses
    }
    if (!(full == fast)) std::abort();
    std::string encoded = tapedeck::encode_record_line(fast);
    encoded.pop_back();
    if (encoded != line) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_fast_path(input);
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
