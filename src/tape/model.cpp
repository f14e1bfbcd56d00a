#include <array>
#include <cstring>
#include <type_traits>

#include "tapedeck/error.hpp"
#include "tapedeck/pack.hpp"
#include "tapedeck/tape.hpp"

#include "tapedeck/extensions.hpp"

namespace tapedeck {

namespace {
std::string format_error(const std::string& file, uint64_t line, const std::string& detail) {
  if (line == 0) return file + ": " + detail;
  return file + ":" + std::to_string(line) + ": " + detail;
}
}  // namespace

TapeError::TapeError(std::string file, uint64_t line, std::string detail)
    : std::runtime_error(format_error(file, line, detail)),
      file_(std::move(file)),
      line_(line),
      detail_(std::move(detail)) {}

std::string_view to_string(Phase phase) {
  return phase == Phase::runtime_finalize ? "runtime_finalize" : "user_script";
}

std::string_view to_string(ClockSource source) {
  return source == ClockSource::monotonic ? "monotonic" : "wall";
}

std::optional<Phase> parse_phase(std::string_view text) {
  if (text == "user_script") return Phase::user_script;
  if (text == "runtime_finalize") return Phase::runtime_finalize;
  return std::nullopt;
}

std::optional<ClockSource> parse_clock_source(std::string_view text) {
  if (text == "wall") return ClockSource::wall;
  if (text == "monotonic") return ClockSource::monotonic;
  return std::nullopt;
}

Header Header::current(std::optional<int64_t> started_at_unix_ms,
                       std::optional<std::string> script_path, std::vector<std::string> argv) {
  Header header;
  header.version = kTapeFormatVersion;
  header.harn_version = TAPEDECK_VERSION;
  header.started_at_unix_ms = started_at_unix_ms;
  header.script_path = std::move(script_path);
  header.argv = std::move(argv);
  return header;
}

std::string_view kind_name(const RecordKind& kind) {
  return std::visit(
      [](const auto& k) -> std::string_view {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, kind::ClockRead>) return "clock_read";
        if constexpr (std::is_same_v<K, kind::ClockSleep>) return "clock_sleep";
        if constexpr (std::is_same_v<K, kind::LlmCall>) return "llm_call";
        if constexpr (std::is_same_v<K, kind::FileRead>) return "file_read";
        if constexpr (std::is_same_v<K, kind::FileWrite>) return "file_write";
        if constexpr (std::is_same_v<K, kind::FileDelete>) return "file_delete";
        if constexpr (std::is_same_v<K, kind::ProcessSpawn>) return "process_spawn";
        if constexpr (std::is_same_v<K, kind::Unknown>) return k.name;
      },
      kind);
}

const std::vector<std::string_view>& known_kind_names() {
  static const std::vector<std::string_view> names = {"clock_read",   "clock_sleep", "llm_call",
                                                      "file_read",    "file_write",  "file_delete",
                                                      "process_spawn"};
  return names;
}

bool is_valid_cas_name(std::string_view name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::filesystem::path own_sidecar_for(const std::filesystem::path& tape_path) {
  // A compressed tape shares its plain name's sidecar: NAME.tape.zst -> NAME.tape.cas.
  std::filesystem::path dir =
      tape_path.extension() == ".zst" ? tape_path.parent_path() / tape_path.stem() : tape_path;
  dir += ".cas";
  return dir;
}

std::filesystem::path shared_store_for(const std::filesystem::path& tape_path) {
  return tape_path.parent_path() / kSharedStoreName;
}

std::filesystem::path cas_dir_for(const std::filesystem::path& tape_path) {
  std::filesystem::path own = own_sidecar_for(tape_path);
  std::error_code ignored;
  if (std::filesystem::is_directory(own, ignored)) return own;
  std::filesystem::path shared = shared_store_for(tape_path);
  if (std::filesystem::is_directory(shared, ignored)) return shared;
  // A pack's entries are read where this process unpacked it.
  if (pack::is_packed_tape(tape_path)) return pack::read_view(tape_path).sidecar;
  return own;
}

namespace {

// The length of the UTF-8 sequence of a non-ASCII lead byte at `p`, or 0 when what starts there
// is not one: a stray byte, a sequence cut short, an overlong form, a surrogate or a value past
// U+10FFFF (Rust agrees).
size_t utf8_sequence_at(const unsigned char* p, const unsigned char* end) {
  const unsigned char c = *p;
  size_t need;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    need = 1;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    need = 2;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    need = 3;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (static_cast<size_t>(end - p) <= need) return 0;
  for (size_t i = 1; i <= need; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  static constexpr std::array<uint32_t, 4> kMinForLength = {0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return need + 1;
}

}  // namespace

bool is_valid_utf8(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* end = p + bytes.size();
  while (p < end) {
    // ASCII fast path, eight bytes at a time.
    while (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, 8);
      if (word & 0x8080808080808080ULL) break;
      p += 8;
    }
    if (p >= end) break;
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const size_t length = utf8_sequence_at(p, end);
    if (length == 0) return false;
    p += length;
  }
  return true;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 8);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* end = p + bytes.size();
  while (p < end) {
    const size_t length = *p < 0x80 ? 1 : utf8_sequence_at(p, end);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++p;
      continue;
    }
    out.append(reinterpret_cast<const char*>(p), length);
    p += length;
  }
  return out;
}

Payload make_payload(std::string bytes, std::map<std::string, std::string>& cas) {
  Payload payload;
  payload.content_hash = content_hash(bytes);
  if (bytes.size() <= kMaxInlineBytes && is_valid_utf8(bytes)) {
    payload.storage = Payload::Storage::inline_text;
    payload.text = std::move(bytes);
  } else {
    payload.storage = Payload::Storage::cas;
    payload.cas_len_bytes = bytes.size();
    cas.try_emplace(payload.content_hash, std::move(bytes));
  }
  return payload;
}

std::string_view to_string(Reference reference) {
  switch (reference) {
    case Reference::payload:
      return "payload";
    case Reference::file_bytes:
      return "file bytes";
    case Reference::llm_request:
      return "LLM request";
    case Reference::printed_output:
      return "printed output";
  }
  return "payload";
}

std::vector<std::pair<std::string, uint64_t>> outcome_outputs(const kind::Unknown& record) {
  const auto outcome = extension::program_outcome(record);
  if (!outcome) return {};
  // An output too large to keep names bytes the sidecar never had.
  std::vector<std::pair<std::string, uint64_t>> kept;
  if (outcome->stdout_kept) kept.emplace_back(outcome->stdout_hash, outcome->stdout_size);
  if (outcome->stderr_kept) kept.emplace_back(outcome->stderr_hash, outcome->stderr_size);
  return kept;
}

}  // namespace tapedeck
