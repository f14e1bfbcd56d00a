// Decodes one tape line with simdjson's On-Demand API. Internal to the tape room.
#pragma once

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

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

// The index of alternative K in RecordKind.
template <typename K, typename Variant = RecordKind>
struct KindIndex;
template <typename K, typename... Kinds>
struct KindIndex<K, std::variant<Kinds...>> {
  static constexpr size_t value = [] {
    size_t index = 0;
    (void)((std::is_same_v<K, Kinds> ? false : (++index, true)) && ...);
    return index;
  }();
};

// The alternatives put aside by reuse_as, per kind: one set per thread, shared by every K.
inline std::array<std::vector<RecordKind>, std::variant_size_v<RecordKind>>& kinds_put_aside() {
  thread_local std::array<std::vector<RecordKind>, std::variant_size_v<RecordKind>> put_aside;
  return put_aside;
}

// Makes `kind` hold alternative K, reusing storage across changes of kind: a reused record that
// switches kinds puts the alternative it held aside (a few per kind, per thread) and takes back
// one of K put aside earlier, so strings keep their capacity instead of being freed and allocated
// again on every line of a mixed tape. Fields keep old values: the caller sets every one.
template <typename K>
K& reuse_as(RecordKind& kind) {
  if (K* same = std::get_if<K>(&kind)) return *same;
  // A few per kind: the mix of kinds among reused records drifts, and one spare would be
  // overwritten (and freed) whenever two records of a kind change before one changes back.
  constexpr size_t kSparesPerKind = 64;
  auto& put_aside = kinds_put_aside();
  std::vector<RecordKind>& from_spares = put_aside[kind.index()];
  if (from_spares.size() < kSparesPerKind) from_spares.push_back(std::move(kind));
  std::vector<RecordKind>& to_spares = put_aside[KindIndex<K>::value];
  if (!to_spares.empty()) {
    kind = std::move(to_spares.back());
    to_spares.pop_back();
  } else {
    kind.template emplace<K>();
  }
  return std::get<K>(kind);
}

// Strips the line's trailing '\r' and answers whether anything but whitespace is left.
bool trim_line(std::string_view& line);

// Reads `line` if it is byte for byte the canonical encoding of a record (the encoder's output
// without its newline), filling `record`, and says whether it was. On false `record` is partly
// overwritten and the line must go to LineDecoder, which reads any other form or names the error.
bool decode_canonical_record(std::string_view line, Record& record);

// Decodes a line that must be a record (a header past the first line is an error): the
// canonical fast path first, then the full decoder. Answers whether the line was already
// canonical (so its bytes are its canonical encoding). Throws TapeError naming `source` and
// `line_number`.
bool decode_record_line(LineDecoder& decoder, std::string_view line, const std::string& source,
                        uint64_t line_number, Record& record);

}  // namespace tapedeck::detail
