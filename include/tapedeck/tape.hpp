// The tape model (format version 1): a header line, then one record per line.
// Field order and types mirror the reference implementation so that tapes stay byte-compatible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tapedeck {

inline constexpr uint32_t kTapeFormatVersion = 1;
// Payloads larger than this, or not valid UTF-8, go to the CAS sidecar instead of inline.
inline constexpr size_t kMaxInlineBytes = 4 * 1024;

enum class Phase : uint8_t { user_script = 0, runtime_finalize = 1 };
enum class ClockSource : uint8_t { wall = 0, monotonic = 1 };

std::string_view to_string(Phase phase);
std::string_view to_string(ClockSource source);
std::optional<Phase> parse_phase(std::string_view text);
std::optional<ClockSource> parse_clock_source(std::string_view text);

struct Header {
  uint32_t version = kTapeFormatVersion;
  std::string harn_version;
  std::optional<int64_t> started_at_unix_ms;
  std::optional<std::string> script_path;
  std::vector<std::string> argv;

  // A header stamped with this library's version, as a fresh recording writes it.
  static Header current(std::optional<int64_t> started_at_unix_ms = std::nullopt,
                        std::optional<std::string> script_path = std::nullopt,
                        std::vector<std::string> argv = {});
  bool operator==(const Header&) const = default;
};

// Bytes a record carries: inline UTF-8 text, or a reference to a CAS sidecar entry.
struct Payload {
  enum class Storage : uint8_t { inline_text, cas };
  Storage storage = Storage::inline_text;
  std::string content_hash;
  std::string text;            // inline_text only
  uint64_t cas_len_bytes = 0;  // cas only

  bool in_cas() const { return storage == Storage::cas; }
  uint64_t len_bytes() const { return in_cas() ? cas_len_bytes : text.size(); }
  bool operator==(const Payload&) const = default;
};

namespace kind {
struct ClockRead {
  ClockSource source = ClockSource::wall;
  int64_t value_ms = 0;
  // tapedeck's extension (written only when not empty): the reader's lane. A replay serves each
  // lane's reads in the order the recording made them, whatever the interleaving with other
  // lanes' reads, so that threads reading the clock side by side are each handed their own
  // values. A writer names lanes by what a replay reproduces (for a Go program under the floor,
  // the function of the package time that read: "time.now", "time.Since", …). Reads without a
  // lane share one.
  std::string lane = {};
  bool operator==(const ClockRead&) const = default;
};
struct ClockSleep {
  uint64_t duration_ms = 0;
  // tapedeck's extension (written only when true): the sleep was a wait with a timeout (poll,
  // select, epoll) that timed out, an event loop's sleep. Its length is timing, which semantic
  // fidelity does not gate on; a replay skips the wait it stands for.
  bool waited = false;
  // tapedeck's extension (written only when not empty, after `waited`): the lane of the thread
  // that slept or waited (a thread lane, see ClockRead::lane); empty: the root's main thread, or
  // a tape that does not say. A replay lets other threads read on past it in their own lanes.
  std::string thread = {};
  bool operator==(const ClockSleep&) const = default;
};
struct LlmCall {
  std::string request_digest;
  Payload response;
  bool operator==(const LlmCall&) const = default;
};
struct FileRead {
  std::string path;
  std::string content_hash;
  uint64_t len_bytes = 0;
  // tapedeck's extension (`"code":true`, written only when true): the file is the program's
  // code (its script, a module it imports), which a replay reads as it is now rather than as
  // recorded, so that an edit to the agent is tested; fidelity notes a change to it.
  bool code = false;
  // tapedeck's extension (`"found":true`, written only when true, after `code`): the file as the
  // run found it, taped just before the run first changed it (it may not have read it): what a
  // replay's view starts from, whatever the workspace or home holds now. A `file_delete` with it
  // says there was no file.
  bool found = false;
  // tapedeck's extension (written only when not empty, last): the lane of the thread whose call
  // made the record (see ClockSleep::thread); a replay lets other threads read on past it.
  std::string thread = {};
  bool operator==(const FileRead&) const = default;
};
// tapedeck's extension of the format: `"by_subprocess":true` (written only when true, so other
// tapes keep the reference's exact bytes; readers that do not know it ignore it) marks a change a
// subprocess made to the workspace, which a replay, not running the subprocess, applies itself.
struct FileWrite {
  std::string path;
  std::string content_hash;
  uint64_t len_bytes = 0;
  bool by_subprocess = false;
  // With by_subprocess: the file's permission bits (`"mode":493`), so that a replay makes, say,
  // the program a compiler built executable again.
  std::optional<uint32_t> mode = std::nullopt;
  std::string thread = {};  // as FileRead::thread
  bool operator==(const FileWrite&) const = default;
};
struct FileDelete {
  std::string path;
  bool by_subprocess = false;
  bool found = false;       // as FileRead::found: there was no file when the run first changed it
  std::string thread = {};  // as FileRead::thread
  bool operator==(const FileDelete&) const = default;
};
struct ProcessSpawn {
  std::string program;
  std::vector<std::string> args;
  std::optional<std::string> cwd;
  int32_t exit_code = 0;
  uint64_t duration_ms = 0;
  Payload stdout_payload;
  Payload stderr_payload;
  // tapedeck's extension (written only when not zero): how many process ids the subprocess and
  // what it started took in the run's pid namespace, so that a replay, which does not run it,
  // moves the namespace's last pid on as far and the program's next fork gets the recorded pid.
  uint64_t pids = 0;
  // tapedeck's extension (written only when not zero): the subprocess's place in the order the
  // run's subprocesses started (1, 2, …). The record is made when it ends, so subprocesses of the
  // same command that overlap end in another order than they began; a replay, which hands out
  // their results as they begin, goes by this.
  uint64_t started = 0;
  // tapedeck's extension (`"descended":true`, written only when true): the subprocess was part
  // of the agent, on the way from the root to a process that called the LLM (a wrapper, a
  // shell script, a package runner, the agent itself), so its own inputs are on the tape and a
  // replay runs it again rather than playing it back.
  bool descended = false;
  bool operator==(const ProcessSpawn&) const = default;
};
// A kind this version does not know. Its JSON object is kept (minified) and written back as is,
// so that a tape from a newer writer survives a round trip through an older tapedeck.
struct Unknown {
  std::string name;
  std::string raw_json;
  bool operator==(const Unknown&) const = default;
};
}  // namespace kind

using RecordKind =
    std::variant<kind::ClockRead, kind::ClockSleep, kind::LlmCall, kind::FileRead, kind::FileWrite,
                 kind::FileDelete, kind::ProcessSpawn, kind::Unknown>;

// The wire name of a kind ("clock_read", …; an unknown kind answers its own name).
std::string_view kind_name(const RecordKind& kind);
// The names of the seven kinds this version knows, in wire order.
const std::vector<std::string_view>& known_kind_names();

struct Record {
  uint64_t seq = 0;
  Phase phase = Phase::user_script;
  int64_t virtual_time_ms = 0;
  int64_t monotonic_ms = 0;
  RecordKind kind;
  bool operator==(const Record&) const = default;
};

// Calls visit(const Payload&) for every payload a record carries, in wire order.
template <typename Visit>
void for_each_payload(const RecordKind& kind, Visit&& visit) {
  if (const auto* llm = std::get_if<kind::LlmCall>(&kind)) {
    visit(llm->response);
  } else if (const auto* spawn = std::get_if<kind::ProcessSpawn>(&kind)) {
    visit(spawn->stdout_payload);
    visit(spawn->stderr_payload);
  }
}

// What a record names in its tape's sidecar. A payload in the CAS must be there. The others are
// tapedeck's: the bytes of a file read or written (`run` keeps them, for replay), the canonical
// body of an LLM call's request (kept for the diff of a replay's miss), and what an `outcome`
// record says the program printed. The reference's tapes use file hashes as digests only, so
// those may be absent; every command that copies, checks or counts a tape's sidecar goes by this.
enum class Reference : uint8_t { payload, file_bytes, llm_request, printed_output };
std::string_view to_string(Reference reference);

// The content hashes (and lengths) an `outcome` record names (tapedeck's extension kind).
std::vector<std::pair<std::string, uint64_t>> outcome_outputs(const kind::Unknown& record);

// Calls visit(const std::string& name, std::optional<uint64_t> len_bytes, Reference) for every
// sidecar entry a record names, payloads first.
template <typename Visit>
void for_each_reference(const RecordKind& kind, Visit&& visit) {
  for_each_payload(kind, [&](const Payload& payload) {
    if (payload.in_cas()) {
      visit(payload.content_hash, std::optional<uint64_t>(payload.cas_len_bytes),
            Reference::payload);
    }
  });
  if (const auto* read = std::get_if<kind::FileRead>(&kind)) {
    visit(read->content_hash, std::optional<uint64_t>(read->len_bytes), Reference::file_bytes);
  } else if (const auto* write = std::get_if<kind::FileWrite>(&kind)) {
    visit(write->content_hash, std::optional<uint64_t>(write->len_bytes), Reference::file_bytes);
  } else if (const auto* llm = std::get_if<kind::LlmCall>(&kind)) {
    visit(llm->request_digest, std::optional<uint64_t>(), Reference::llm_request);
  } else if (const auto* unknown = std::get_if<kind::Unknown>(&kind)) {
    for (const auto& [hash, size] : outcome_outputs(*unknown)) {
      visit(hash, std::optional<uint64_t>(size), Reference::printed_output);
    }
  }
}

// Lowercase hex BLAKE3 of the bytes: the content hash of every payload and CAS entry.
std::string content_hash(std::string_view bytes);
// A CAS entry name is exactly 64 lowercase hex characters; anything else is refused so that a
// tape can never make tapedeck touch a path outside its sidecar.
bool is_valid_cas_name(std::string_view name);
// The sidecar a tape's entries are read from and written to: its own, NAME.tape.cas (a compressed
// NAME.tape.zst's too), when that folder exists; else, when the tape's folder has a shared store
// (kSharedStoreName), that store; a pack's (see pack.hpp), where this process unpacked it; else
// its own, to be made.
std::filesystem::path cas_dir_for(const std::filesystem::path& tape_path);
// NAME.tape -> NAME.tape.cas, NAME.tape.zst -> NAME.tape.cas: the sidecar of the tape alone.
std::filesystem::path own_sidecar_for(const std::filesystem::path& tape_path);
// A folder of tapes may keep one content store for all of them: written once per distinct blob,
// and `tapedeck gc` removes the blobs no tape there names any more.
inline constexpr std::string_view kSharedStoreName = ".tapedeck-cas";
// DIR/.tapedeck-cas for a tape in DIR (whether it exists or not).
std::filesystem::path shared_store_for(const std::filesystem::path& tape_path);
// Applies the payload rule: inline when valid UTF-8 and at most kMaxInlineBytes, else CAS
// (and then the bytes are added to `cas` under their hash, unless already there).
Payload make_payload(std::string bytes, std::map<std::string, std::string>& cas);
bool is_valid_utf8(std::string_view bytes);
// `bytes` with each byte that is not part of valid UTF-8 replaced by U+FFFD: a JSON string holds
// text, and a file name may hold any byte but `/` and NUL.
std::string utf8_lossy(std::string_view bytes);

// A whole tape in memory. Loaded tapes keep CAS entries on disk and read them on demand.
class Tape {
 public:
  Tape() = default;
  explicit Tape(Header tape_header) : header(std::move(tape_header)) {}

  Header header;
  std::vector<Record> records;
  // Bytes of a torn last line that load() stopped before, if any (see TornTail in codec.hpp).
  uint64_t torn_tail_bytes = 0;

  // Reads a tape; throws TapeError naming the file and line on malformed input.
  static Tape load(const std::filesystem::path& path);
  // Writes the tape atomically (temporary file, fsync, rename), CAS entries first.
  void persist(const std::filesystem::path& path) const;

  // The payload's bytes: inline text, or the CAS entry (checked against its hash).
  // Throws TapeError when the entry is missing, misnamed or corrupt.
  std::string resolve(const Payload& payload) const;

  // Adds bytes under the payload rule and returns the payload that names them.
  Payload add_payload(std::string bytes) { return make_payload(std::move(bytes), cas_); }
  // CAS entries held in memory (a loaded tape holds none until resolved from disk).
  const std::map<std::string, std::string>& cas_entries() const { return cas_; }
  std::map<std::string, std::string>& cas_entries() { return cas_; }
  // The sidecar a loaded tape reads its CAS entries from; empty for an in-memory tape.
  const std::filesystem::path& cas_dir() const { return cas_dir_; }

 private:
  std::map<std::string, std::string> cas_;
  std::filesystem::path cas_dir_;
};

}  // namespace tapedeck
