// Line decoding with simdjson On-Demand, following the reference reader's rules:
// fields in any order, unknown fields ignored, missing `phase` = user_script, missing optional
// header fields = null/[], an unknown kind kept verbatim, every other mismatch an error.
//
// On-Demand only validates what it visits, so values we skip (unknown fields, unknown kinds) are
// validated in full by simdjson's DOM parser: a tape that is not JSON is refused wherever the
// damage is.
#include "tape/decode.hpp"

#include <simdjson.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace tapedeck::detail {

namespace od = simdjson::ondemand;

size_t decoder_padding() {
  return simdjson::SIMDJSON_PADDING;
}

namespace {

[[noreturn]] void fail(std::string message) {
  throw LineError(std::move(message));
}

std::string quoted(std::string_view key) {
  return "`" + std::string(key) + "`";
}

// The value's own text for an error message, trimmed and cut short.
std::string shown(std::string_view token) {
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t' || token.back() == '\r')) {
    token.remove_suffix(1);
  }
  if (token.size() > 40) return std::string(token.substr(0, 40)) + "…";
  return std::string(token);
}

// A field set as bits, for "missing field" and "duplicate field" checks.
class FieldSet {
 public:
  // Marks field `bit`; a second sighting is an error, as in the reference reader.
  void see(unsigned bit, std::string_view key) {
    if (bits_ & (1u << bit)) fail("duplicate field " + quoted(key));
    bits_ |= 1u << bit;
  }
  bool has(unsigned bit) const { return (bits_ & (1u << bit)) != 0; }
  void require(unsigned bit, std::string_view key, std::string_view where) const {
    if (!has(bit)) fail("missing field " + quoted(key) + " in " + std::string(where));
  }

 private:
  uint32_t bits_ = 0;
};

// The field's key. Keys without escapes (all of a canonical tape's) are read in place;
// an escaped key is unescaped by simdjson.
std::string_view key_of(od::field& field) {
  const char* start = field.key().raw();
  const char* end = start;
  while (*end != '"' && *end != '\\') ++end;  // stage 1 guarantees the closing quote
  if (*end == '"') return {start, static_cast<size_t>(end - start)};
  std::string_view key;
  if (field.unescaped_key().get(key)) fail("malformed object key");
  return key;
}

// If `text` starts with `prefix`, the quoted word that follows it (no escapes), else empty.
std::string_view word_after(std::string_view text, std::string_view prefix) {
  if (text.size() <= prefix.size() || text.substr(0, prefix.size()) != prefix) return {};
  text.remove_prefix(prefix.size());
  size_t end = 0;
  while (end < text.size() && text[end] != '"' && text[end] != '\\') ++end;
  if (end == text.size() || text[end] != '"') return {};
  return text.substr(0, end);
}

}  // namespace

struct LineDecoder::Impl {
  od::parser parser;
  simdjson::dom::parser validator;
  const char* line_end = nullptr;  // end of the line being decoded: in-place peeks stop there

  // ---- scalars -------------------------------------------------------------------------------

  static void read_string(od::value value, std::string_view key, std::string& out) {
    std::string_view text;
    if (value.get_string().get(text)) {
      fail("field " + quoted(key) + " must be a string, got " + shown(value.raw_json_token()));
    }
    out.assign(text.data(), text.size());
  }

  static uint64_t read_u64(od::value value, std::string_view key) {
    uint64_t number;
    if (value.get_uint64().get(number)) {
      fail("field " + quoted(key) + " must be an unsigned 64-bit integer, got " +
           shown(value.raw_json_token()));
    }
    return number;
  }

  static bool read_flag(od::value value, std::string_view key) {
    bool flag;
    if (value.get_bool().get(flag)) {
      fail("field " + quoted(key) + " must be true or false, got " + shown(value.raw_json_token()));
    }
    return flag;
  }

  static int64_t read_i64(od::value value, std::string_view key) {
    int64_t number;
    if (value.get_int64().get(number)) {
      fail("field " + quoted(key) + " must be a signed 64-bit integer, got " +
           shown(value.raw_json_token()));
    }
    return number;
  }

  static int32_t read_i32(od::value value, std::string_view key) {
    int64_t number;
    if (value.get_int64().get(number) || number < std::numeric_limits<int32_t>::min() ||
        number > std::numeric_limits<int32_t>::max()) {
      fail("field " + quoted(key) + " must be a signed 32-bit integer, got " +
           shown(value.raw_json_token()));
    }
    return static_cast<int32_t>(number);
  }

  static bool read_null(od::value value) {
    bool is_null = false;
    return !value.is_null().get(is_null) && is_null;
  }

  static void read_string_array(od::value value, std::string_view key,
                                std::vector<std::string>& out) {
    od::array array;
    if (value.get_array().get(array)) {
      fail("field " + quoted(key) + " must be an array of strings, got " +
           shown(value.raw_json_token()));
    }
    size_t count = 0;
    for (auto element : array) {
      od::value item;
      if (element.get(item)) fail("malformed array in field " + quoted(key));
      if (count == out.size()) out.emplace_back();
      read_string(item, key, out[count++]);
    }
    out.resize(count);
  }

  // A value we do not use: still checked to be well-formed JSON.
  void validate_skipped(od::value value, std::string_view key) {
    od::json_type type;
    if (value.type().get(type)) fail("malformed JSON in field " + quoted(key));
    bool ok = true;
    switch (type) {
      case od::json_type::object: {
        od::object object;
        std::string_view raw;
        ok = !value.get_object().get(object) && !object.raw_json().get(raw) && validates(raw);
        break;
      }
      case od::json_type::array: {
        od::array array;
        std::string_view raw;
        ok = !value.get_array().get(array) && !array.raw_json().get(raw) && validates(raw);
        break;
      }
      case od::json_type::string: {
        std::string_view text;
        ok = !value.get_string().get(text);
        break;
      }
      case od::json_type::number: {
        od::number number;
        ok = !value.get_number().get(number);
        break;
      }
      case od::json_type::boolean: {
        bool flag;
        ok = !value.get_bool().get(flag);
        break;
      }
      case od::json_type::null:
        ok = read_null(value);
        break;
    }
    if (!ok) fail("malformed JSON in field " + quoted(key));
  }

  // `raw` points into the line buffer, which keeps padding readable after it.
  bool validates(std::string_view raw) {
    simdjson::dom::element element;
    return !validator.parse(raw.data(), raw.size(), false).get(element);
  }

  // ---- payloads ------------------------------------------------------------------------------

  // Untagged: {content_hash, text} reads as inline (even beside len_bytes), else
  // {content_hash, len_bytes} as a CAS reference.
  void read_payload(od::value value, std::string_view key, Payload& out) {
    od::object object;
    if (value.get_object().get(object)) {
      fail("field " + quoted(key) + " must be a payload object, got " +
           shown(value.raw_json_token()));
    }
    bool has_hash = false, has_text = false, has_len = false;
    uint64_t len = 0;
    for (auto field_result : object) {
      od::field field;
      std::string_view name;
      if (std::move(field_result).get(field)) fail("malformed payload in field " + quoted(key));
      name = key_of(field);
      if (name == "content_hash") {
        if (has_hash) fail("duplicate field `content_hash` in " + quoted(key));
        read_string(field.value(), "content_hash", out.content_hash);
        has_hash = true;
      } else if (name == "text") {
        std::string_view text;
        if (!field.value().get_string().get(text)) {
          out.text.assign(text.data(), text.size());
          has_text = true;
        } else {
          validate_skipped(field.value(), name);
        }
      } else if (name == "len_bytes") {
        if (!field.value().get_uint64().get(len)) {
          has_len = true;
        } else {
          validate_skipped(field.value(), name);
        }
      } else {
        validate_skipped(field.value(), name);
      }
    }
    if (!has_hash) fail("missing field `content_hash` in " + quoted(key));
    if (has_text) {
      out.storage = Payload::Storage::inline_text;
      out.cas_len_bytes = 0;
    } else if (has_len) {
      out.storage = Payload::Storage::cas;
      out.cas_len_bytes = len;
      out.text.clear();
    } else {
      fail("field " + quoted(key) +
           " must hold `text` (inline) or `len_bytes` (CAS) beside `content_hash`");
    }
  }

  // ---- kinds ---------------------------------------------------------------------------------

  void read_kind(od::value value, RecordKind& out) {
    // Canonical kind objects start with their tag: read it in place. Otherwise look it up and
    // rewind, since the tag decides how every other field reads.
    const char* at = value.raw_json_token().data();
    std::string tag_copy(word_after({at, static_cast<size_t>(line_end - at)}, R"({"kind":")"));
    od::object object;
    if (value.get_object().get(object)) {
      fail("field `kind` must be an object, got " + shown(value.raw_json_token()));
    }
    if (tag_copy.empty()) {
      od::value tag_value;
      auto error = object.find_field_unordered("kind").get(tag_value);
      if (error == simdjson::NO_SUCH_FIELD) fail("missing field `kind` in the kind object");
      if (error) fail("malformed kind object: " + std::string(simdjson::error_message(error)));
      std::string_view tag;
      if (tag_value.get_string().get(tag)) fail("the kind's tag `kind` must be a string");
      tag_copy.assign(tag);  // the string buffer is reused by later reads
      bool empty;
      if (object.reset().get(empty)) fail("malformed kind object");
    }

    if (tag_copy == "clock_read") {
      read_clock_read(object, reuse_as<kind::ClockRead>(out));
    } else if (tag_copy == "clock_sleep") {
      read_clock_sleep(object, reuse_as<kind::ClockSleep>(out));
    } else if (tag_copy == "llm_call") {
      read_llm_call(object, reuse_as<kind::LlmCall>(out));
    } else if (tag_copy == "file_read") {
      read_file_meta(object, reuse_as<kind::FileRead>(out), "file_read");
    } else if (tag_copy == "file_write") {
      read_file_meta(object, reuse_as<kind::FileWrite>(out), "file_write");
    } else if (tag_copy == "file_delete") {
      read_file_delete(object, reuse_as<kind::FileDelete>(out));
    } else if (tag_copy == "process_spawn") {
      read_process_spawn(object, reuse_as<kind::ProcessSpawn>(out));
    } else {
      read_unknown(object, std::move(tag_copy), reuse_as<kind::Unknown>(out));
    }
  }

  // Iterates the kind object's fields, skipping its tag, handing the rest to `on_field`.
  template <typename OnField>
  void for_each_kind_field(od::object& object, OnField&& on_field) {
    bool tag_seen = false;
    for (auto field_result : object) {
      od::field field;
      std::string_view name;
      if (std::move(field_result).get(field)) fail("malformed kind object");
      name = key_of(field);
      if (name == "kind") {
        if (tag_seen) fail("duplicate field `kind` in the kind object");
        tag_seen = true;
        continue;  // the tag was read before the walk
      }
      if (!on_field(name, field.value())) validate_skipped(field.value(), name);
    }
  }

  void read_clock_read(od::object& object, kind::ClockRead& out) {
    FieldSet seen;
    out.lane.clear();
    for_each_kind_field(object, [&](std::string_view name, od::value value) {
      if (name == "source") {
        seen.see(0, name);
        std::string_view text;
        if (value.get_string().get(text)) fail("field `source` must be a string");
        auto source = parse_clock_source(text);
        if (!source) {
          fail("unknown clock source `" + std::string(text) + "` (expected wall or monotonic)");
        }
        out.source = *source;
      } else if (name == "value_ms") {
        seen.see(1, name);
        out.value_ms = read_i64(value, name);
      } else if (name == "lane") {
        seen.see(2, name);
        read_string(value, name, out.lane);
      } else {
        return false;
      }
      return true;
    });
    seen.require(0, "source", "clock_read");
    seen.require(1, "value_ms", "clock_read");
  }

  void read_clock_sleep(od::object& object, kind::ClockSleep& out) {
    FieldSet seen;
    out.waited = false;  // an absent extension is false, whatever the reused record held
    out.thread.clear();
    for_each_kind_field(object, [&](std::string_view name, od::value value) {
      if (name == "duration_ms") {
        seen.see(0, name);
        out.duration_ms = read_u64(value, name);
      } else if (name == "waited") {  // tapedeck's extension
        out.waited = read_flag(value, name);
      } else if (name == "thread") {  // tapedeck's extension
        read_string(value, name, out.thread);
      } else {
        return false;
      }
      return true;
    });
    seen.require(0, "duration_ms", "clock_sleep");
  }

  void read_llm_call(od::object& object, kind::LlmCall& out) {
    FieldSet seen;
    for_each_kind_field(object, [&](std::string_view name, od::value value) {
      if (name == "request_digest") {
        seen.see(0, name);
        read_string(value, name, out.request_digest);
      } else if (name == "response") {
        seen.see(1, name);
        read_payload(value, name, out.response);
      } else {
        return false;
      }
      return true;
    });
    seen.require(0, "request_digest", "llm_call");
    seen.require(1, "response", "llm_call");
  }

  template <typename FileMeta>
  void read_file_meta(od::object& object, FileMeta& out, std::string_view where) {
    FieldSet seen;
    if constexpr (std::is_same_v<FileMeta, kind::FileWrite>) {
      out.by_subprocess = false;  // absent extensions, whatever the reused record held
      out.mode.reset();
    } else {
      out.code = false;  // absent extensions, whatever the reused record held
      out.found = false;
    }
    out.thread.clear();
    for_each_kind_field(object, [&](std::string_view name, od::value value) {
      if (name == "path") {
        seen.see(0, name);
        read_string(value, name, out.path);
      } else if (name == "content_hash") {
        seen.see(1, name);
        read_string(value, name, out.content_hash);
      } else if (name == "len_bytes") {
        seen.see(2, name);
        out.len_bytes = read_u64(value, name);
      } else if (name == "thread") {  // tapedeck's extension
        read_string(value, name, out.thread);
      } else if constexpr (std::is_same_v<FileMeta, kind::FileWrite>) {
        if (name == "by_subprocess") {
          out.by_subprocess = read_flag(value, name);
        } else if (name == "mode") {
          const uint64_t mode = read_u64(value, name);
          if (mode > 07777) fail("field `mode` must be permission bits (at most 4095)");
          out.mode = static_cast<uint32_t>(mode);
        } else {
          return false;
        }
      } else if (name == "code") {
        out.code = read_flag(value, name);
      } else if (name == "found") {
        out.found = read_flag(value, name);
      } else {
        return false;
      }
      return true;
    });
    seen.require(0, "path", where);
    seen.require(1, "content_hash", where);
    seen.require(2, "len_bytes", where);
  }

  void read_file_delete(od::object& object, kind::FileDelete& out) {
    FieldSet seen;
    out.by_subprocess = false;  // absent extensions, whatever the reused record held
    out.found = false;
    out.thread.clear();
    for_each_kind_field(object, [&](std::string_view name, od::value value) {
      if (name == "by_subprocess") {
        out.by_subprocess = read_flag(value, name);
        return true;
      }
      if (name == "found") {
        out.found = read_flag(value, name);
        return true;
      }
      if (name == "thread") {  // tapedeck's extension
        read_string(value, name, out.thread);
        return true;
      }
      if (name != "path") return false;
      seen.see(0, name);
      read_string(value, name, out.path);
      return true;
    });
    seen.require(0, "path", "file_delete");
  }

  void read_process_spawn(od::object& object, kind::ProcessSpawn& out) {
    FieldSet seen;
    out.pids = 0;  // absent extensions, whatever the reused record held
    out.started = 0;
    out.descended = false;
    for_each_kind_field(object, [&](std::string_view name, od::value value) {
      if (name == "program") {
        seen.see(0, name);
        read_string(value, name, out.program);
      } else if (name == "args") {
        seen.see(1, name);
        read_string_array(value, name, out.args);
      } else if (name == "cwd") {
        seen.see(2, name);
        if (read_null(value)) {
          out.cwd.reset();
        } else {
          if (!out.cwd) out.cwd.emplace();
          read_string(value, name, *out.cwd);
        }
      } else if (name == "exit_code") {
        seen.see(3, name);
        out.exit_code = read_i32(value, name);
      } else if (name == "duration_ms") {
        seen.see(4, name);
        out.duration_ms = read_u64(value, name);
      } else if (name == "stdout_payload") {
        seen.see(5, name);
        read_payload(value, name, out.stdout_payload);
      } else if (name == "stderr_payload") {
        seen.see(6, name);
        read_payload(value, name, out.stderr_payload);
      } else if (name == "pids") {
        seen.see(7, name);
        out.pids = read_u64(value, name);
      } else if (name == "started") {
        seen.see(8, name);
        out.started = read_u64(value, name);
      } else if (name == "descended") {
        seen.see(9, name);
        out.descended = read_flag(value, name);
      } else {
        return false;
      }
      return true;
    });
    seen.require(0, "program", "process_spawn");
    seen.require(1, "args", "process_spawn");
    if (!seen.has(2)) out.cwd.reset();  // a missing Option reads as None
    seen.require(3, "exit_code", "process_spawn");
    seen.require(4, "duration_ms", "process_spawn");
    seen.require(5, "stdout_payload", "process_spawn");
    seen.require(6, "stderr_payload", "process_spawn");
  }

  void read_unknown(od::object& object, std::string tag, kind::Unknown& out) {
    std::string_view raw;
    if (object.raw_json().get(raw) || !validates(raw)) fail("malformed kind object");
    // Minified, so the kept object stays on one compact line whatever spacing it came with.
    out.raw_json.resize(raw.size());
    size_t minified_size = 0;
    if (simdjson::minify(raw.data(), raw.size(), out.raw_json.data(), minified_size)) {
      fail("malformed kind object");
    }
    out.raw_json.resize(minified_size);
    out.name = std::move(tag);
  }

  // ---- lines ---------------------------------------------------------------------------------

  void read_header_fields(od::object& object, Header& out) {
    FieldSet seen;
    for (auto field_result : object) {
      od::field field;
      std::string_view name;
      if (std::move(field_result).get(field)) fail("malformed header");
      name = key_of(field);
      od::value value = field.value();
      if (name == "type") {
        seen.see(0, name);  // read before the walk
      } else if (name == "version") {
        seen.see(1, name);
        uint64_t version = read_u64(value, name);
        if (version > std::numeric_limits<uint32_t>::max()) {
          fail("field `version` must fit in 32 bits, got " + std::to_string(version));
        }
        out.version = static_cast<uint32_t>(version);
      } else if (name == "harn_version") {
        seen.see(2, name);
        read_string(value, name, out.harn_version);
      } else if (name == "started_at_unix_ms") {
        seen.see(3, name);
        if (read_null(value)) {
          out.started_at_unix_ms.reset();
        } else {
          out.started_at_unix_ms = read_i64(value, name);
        }
      } else if (name == "script_path") {
        seen.see(4, name);
        if (read_null(value)) {
          out.script_path.reset();
        } else {
          out.script_path.emplace();
          read_string(value, name, *out.script_path);
        }
      } else if (name == "argv") {
        seen.see(5, name);
        read_string_array(value, name, out.argv);
      } else {
        validate_skipped(value, name);
      }
    }
    seen.require(1, "version", "the header");
    seen.require(2, "harn_version", "the header");
    if (!seen.has(3)) out.started_at_unix_ms.reset();
    if (!seen.has(4)) out.script_path.reset();
    if (!seen.has(5)) out.argv.clear();
  }

  void read_record_fields(od::object& object, Record& out) {
    FieldSet seen;
    for (auto field_result : object) {
      od::field field;
      std::string_view name;
      if (std::move(field_result).get(field)) fail("malformed record");
      name = key_of(field);
      od::value value = field.value();
      if (name == "type") {
        seen.see(0, name);  // read before the walk
      } else if (name == "seq") {
        seen.see(1, name);
        out.seq = read_u64(value, name);
      } else if (name == "phase") {
        seen.see(2, name);
        std::string_view text;
        if (value.get_string().get(text)) fail("field `phase` must be a string");
        auto phase = parse_phase(text);
        if (!phase) {
          fail("unknown phase `" + std::string(text) +
               "` (expected user_script or runtime_finalize)");
        }
        out.phase = *phase;
      } else if (name == "virtual_time_ms") {
        seen.see(3, name);
        out.virtual_time_ms = read_i64(value, name);
      } else if (name == "monotonic_ms") {
        seen.see(4, name);
        out.monotonic_ms = read_i64(value, name);
      } else if (name == "kind") {
        seen.see(5, name);
        read_kind(value, out.kind);
      } else {
        validate_skipped(value, name);
      }
    }
    seen.require(1, "seq", "the record");
    if (!seen.has(2)) out.phase = Phase::user_script;
    seen.require(3, "virtual_time_ms", "the record");
    seen.require(4, "monotonic_ms", "the record");
    seen.require(5, "kind", "the record");
  }

  LineType decode(std::string_view line, Header& header, Record& record) {
    od::document doc;
    auto error =
        parser.iterate(line.data(), line.size(), line.size() + simdjson::SIMDJSON_PADDING).get(doc);
    if (error) fail("not JSON: " + std::string(simdjson::error_message(error)));
    od::object object;
    if ((error = doc.get_object().get(object))) {
      fail(error == simdjson::INCORRECT_TYPE
               ? std::string("not a JSON object")
               : "not JSON: " + std::string(simdjson::error_message(error)));
    }

    // Canonical lines start with their type: read it in place. Otherwise look it up and rewind.
    line_end = line.data() + line.size();
    std::string_view type = word_after(line, R"({"type":")");
    const bool type_in_place = !type.empty();
    if (!type_in_place) {
      od::value type_value;
      error = object.find_field_unordered("type").get(type_value);
      if (error == simdjson::NO_SUCH_FIELD) fail("missing field `type` (header or record)");
      if (error) fail("not JSON: " + std::string(simdjson::error_message(error)));
      if (type_value.get_string().get(type)) fail("field `type` must be a string");
    }
    LineType line_type;
    if (type == "header") {
      line_type = LineType::header;
    } else if (type == "record") {
      line_type = LineType::record;
    } else {
      fail("unknown line type `" + std::string(type) + "` (expected header or record)");
    }
    bool empty;
    if (!type_in_place && object.reset().get(empty)) fail("not JSON");

    if (line_type == LineType::header) {
      read_header_fields(object, header);
    } else {
      read_record_fields(object, record);
    }
    // At the end of the document current_location() answers OUT_OF_BOUNDS; anything else is a
    // token after the object.
    const char* trailing = nullptr;
    if (doc.current_location().get(trailing) != simdjson::OUT_OF_BOUNDS) {
      fail("not JSON: trailing characters after the object");
    }
    return line_type;
  }
};

bool trim_line(std::string_view& line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!line.empty() && line.front() == '{') return true;  // the common case: no scan
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') return true;
  }
  return false;
}

bool decode_record_line(LineDecoder& decoder, std::string_view line, const std::string& source,
                        uint64_t line_number, Record& record) {
  if (decode_canonical_record(line, record)) return true;
  thread_local Header stray_header;  // where a misplaced header lands before it is refused
  LineDecoder::LineType type;
  try {
    type = decoder.decode(line, stray_header, record);
  } catch (const LineError& error) {
    throw TapeError(source, line_number, error.what());
  }
  if (type == LineDecoder::LineType::header) {
    throw TapeError(source, line_number,
                    "a second header (a tape has exactly one, on its first line)");
  }
  return false;
}

LineDecoder::LineDecoder() : impl_(std::make_unique<Impl>()) {}
LineDecoder::~LineDecoder() = default;

LineDecoder::LineType LineDecoder::decode(std::string_view line, Header& header, Record& record) {
  try {
    return impl_->decode(line, header, record);
  } catch (const std::bad_alloc&) {
    throw LineError("out of memory decoding a line of " + std::to_string(line.size()) + " bytes");
  }
}

}  // namespace tapedeck::detail
