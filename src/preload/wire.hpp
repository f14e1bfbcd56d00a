// The wire between the processes of a run and the supervisor (`tapedeck run` / `replay`): one
// Unix stream socket per process, carrying frames
//
//   u32 length (little-endian, of what follows) | u8 op | body
//
// whose bodies are sequences of fixed-width integers and length-prefixed byte strings. The
// preload library builds frames in fixed buffers on the stack (no allocation on its paths), so
// everything here works on caller-provided memory; the supervisor and the exec shim append to
// std::string through the same templates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace tapedeck::wire {

// In the run's folder (the socket's): the LLM upstream a recording's subprocesses call directly,
// one line (none when there is none). A file, not a variable: an environment only the recording
// had would move the program's stack, and with it what a program derives from a local's address.
inline constexpr const char* kUpstreamFile = "llm-upstream";

// How a program exec'd in place is run (the answer to Op::exec_in_place).
enum class FloorFollow : uint8_t {
  none = 0,   // as it is: the preload serves it, or nothing will (the supervisor names it)
  plain = 1,  // through tapedeck-exec, served by the floor's whole reach (a static program)
};
// tapedeck-exec's mode for it: "floor:1" (the FloorFollow).
// Set (to 1) in the environment of a program exec'd so, when tapedeck-exec gave it the legacy
// memory layout (ADDR_COMPAT_LAYOUT: mappings grow up from a third of the address space) so that
// the kernel loads a static-pie image below kOwnCodeBelow, where the floor tells its calls from
// a library's. tapedeck-exec takes the layout back for the subprocesses the program starts.
inline constexpr const char* kLegacyLayoutVariable = "TAPEDECK_LEGACY_LAYOUT";
inline constexpr const char* kFloorModePrefix = "floor:";

// Requests, process to supervisor. Only `events` and `hello` have no reply. Each file report
// (R, W, C, D, V) ends with the u64 key of the thread whose call it is (ThreadKey, packed; for
// closed_write, the thread that closed the file; kUnkeyedThread when the run does not key
// threads): its record's `thread`.
enum class Op : uint8_t {
  hello = 'H',         // u64: the subprocess this connection's process belongs to (its place in
                       // the order subprocesses started; sent first, and only by a process that
                       // is not the root's): record holds its records until it proves part of
                       // the agent (an LLM request) or ends a tool (dropped)
  events = 'A',        // a batch of Event entries: {u8 event, i64 value}…
  open_read = 'R',     // path: a workspace file is about to be read (replay: the supervisor
                       // puts the recorded bytes in the view first)
  open_write = 'W',    // path, u8 flags (2: reads too): replay only, a workspace file is about
                       // to be written
  closed_write = 'C',  // path: a written workspace file was closed (its bytes are final)
  deleted = 'D',       // path: a workspace file was deleted
  renamed = 'V',       // old path, new path (absolute; one or both in the workspace), done
  sync = 'N',          // nothing: answered once everything sent before it was handled
  llm_request = 'L',   // u64 the sending thread (ThreadKey, packed): an LLM request to the
                       // proxy is about to be sent (the clock
                       // reads before it are on the tape; a replay's clock moves to the call's)
  spawn_done = 'X',    // record: program, u32 argc, args…, cwd, i32 exit, u64 ms, stdout, stderr,
                       // u64 pids it took (its pid namespace's last pid moved by so much), u64
                       // its place in the order subprocesses started (0: unknown)
  spawn_replay = 'Y',  // replay: program, u32 argc, args…, cwd
  timed_wait = 'T',    // replay: u64 ms, i32 tid, i64 where it ends on the monotonic clock, u8
                       // sleep, u64 the thread (ThreadKey, packed): a wait with that timeout (poll,
  // select, epoll, …) found nothing ready, or (sleep = 1) a sleep begins. `ok`:
  // skip it (the recording has it at this point, or the tree is idle and nothing
  // asking ends sooner): the caller returns "timed out" at once; a sleep is
  // taped by the supervisor then. `busy`: not yet (an LLM call under way,
  // another thread of the tree awake); wait a slice for real and ask again.
  // `wait`: not a replay; wait for real
  exec_in_place = 'I',    // path: a process that continues the tree (the root, a re-run subprocess)
                          // is about to exec this program in place of itself; answered ok with a
                          // u8: a FloorFollow, how the process execs it (through tapedeck-exec,
                          // which announces the exec: the floor serves the program from then on).
                          // Otherwise the supervisor names it when the preload cannot reach it
  exec_followed = 'U',    // from tapedeck-exec (wire::FloorFollow), about to exec a program in
                          // place of the process: path the program, the process's entropy key;
                          // answered ok once the floor will serve it from its exec on
  about_to_change = 'K',  // path, u8 made (1: the process just made it where there was nothing),
                          // u64 the thread: a file of the workspace or of the home folder
                          // (TAPEDECK_HOME) is about to be changed (opened to write, deleted,
                          // renamed), the first time by this process: one the run has no record
                          // of yet is taped as it is now; answered ok once it is
  spawn_claim = 'S',  // from the exec about to start it: program, u32 argc, args…, cwd. Record:
                      // answered with a u64, its place in the order subprocesses start, and a u8:
                      // 1 to run it under the preload, 0 to keep it a black box (--black-box
                      // names it: no preload, LLM calls straight upstream). Replay:
                      // the recorded result is set aside for the process's spawn_replay (its
                      // stand-in may be killed before it asks, as the recording's was)
};

// Replies, supervisor to process.
enum class Reply : uint8_t {
  ok = 'O',       // go ahead
  spawned = 'Z',  // i32 exit, stdout, stderr, u64 pids, u64 ms, u8 injected: a replayed
                  // subprocess's recorded result (injected: changed by a --fault)
  miss = 'M',     // text: the tape does not hold this input; the process must stop
  wait = 'W',     // timed_wait: wait for real (nothing to replay it against)
  busy = 'B',     // timed_wait: not yet: another thread of the tree runs, or an LLM call is
                  // under way and the recording's wait timed out here too
  hold = 'H',     // timed_wait: not yet, and not by itself: an LLM call is under way whose
                  // answer ends the wait, as it did in the recording (no timeout taped here)
  fail = 'F',     // i32 errno: a fault the replay injects (--fault file:PATH=…); the call fails
  live = 'E',     // spawn_replay: u64 its place in the start order; the recorded subprocess was
                  // part of the agent (descended): run it again, under the preload
};

// Entries of an `events` batch.
// sleep: one about to be slept (ms); waited: a wait with a timeout (poll, select, epoll) that
// timed out for real (ms), the program's sleep as much as a sleep is (in both modes);
// *_read_after_wait: a thread's first read after a wait on descriptors (kAfterWaitLane).
enum class Event : uint8_t {
  wall_read = 'w',
  monotonic_read = 'm',
  sleep = 's',
  waited = 't',
  wall_read_after_wait = 'W',
  monotonic_read_after_wait = 'M',
  thread = 'h',     // the reads after it, to the next such entry, are this thread's (ThreadKey
                    // packed; 0, as at a batch's start: the process's main thread)
  wait_over = 'o',  // replay: thread `value`'s wait, asked about (timed_wait), ended otherwise
                    // than skipped (something came, or it timed out for real): it is awake
                    // (sent at once, not batched)
};

// A file report's thread when the run does not key threads (no thread lanes).
constexpr uint64_t kUnkeyedThread = ~uint64_t{0};

constexpr size_t kHeaderBytes = 5;  // u32 length + u8 op
constexpr uint32_t kMaxFrameBytes = 256u << 20;

// A sink over caller memory; `overflow` is set (and nothing more written) when it is full.
struct FixedSink {
  char* data;
  size_t capacity;
  size_t size = 0;
  bool overflow = false;
  void append(const char* bytes, size_t count) {
    if (overflow || count > capacity - size) {
      overflow = true;
      return;
    }
    std::memcpy(data + size, bytes, count);
    size += count;
  }
};

template <typename Sink, typename Int>
void put_int(Sink& sink, Int value) {
  char bytes[sizeof(Int)];
  for (size_t i = 0; i < sizeof(Int); ++i) {
    bytes[i] = static_cast<char>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff);
  }
  sink.append(bytes, sizeof(Int));
}

template <typename Sink>
void put_bytes(Sink& sink, std::string_view bytes) {
  put_int(sink, static_cast<uint32_t>(bytes.size()));
  sink.append(bytes.data(), bytes.size());
}

// The subprocess as the tape names it (program, u32 argc, args…, cwd): its path, or the name it
// was run under when that is another (a multi-call binary: busybox run as `cat` and as `wc` are
// two programs). `argv` is null-terminated, argv[0] included.
template <typename Sink>
void put_invocation(Sink& sink, std::string_view program, const char* const* argv,
                    std::string_view cwd) {
  auto base_name = [](std::string_view path) {
    const size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
  };
  const std::string_view argv0 = argv == nullptr || argv[0] == nullptr ? "" : argv[0];
  const bool renamed = !argv0.empty() && base_name(argv0) != base_name(program);
  put_bytes(sink, renamed ? argv0 : program);
  uint32_t argc = 0;
  while (argv != nullptr && argv[0] != nullptr && argv[argc + 1] != nullptr) ++argc;
  put_int(sink, argc);
  for (uint32_t i = 0; i < argc; ++i) put_bytes(sink, argv[i + 1]);
  put_bytes(sink, cwd);
}

// Starts a frame; finish_frame() fills in its length once the body is written.
template <typename Sink>
void begin_frame(Sink& sink, uint8_t op) {
  put_int(sink, uint32_t{0});
  sink.append(reinterpret_cast<const char*>(&op), 1);
}

inline void store_length(char* frame, size_t frame_size) {
  const auto length = static_cast<uint32_t>(frame_size - 4);
  for (size_t i = 0; i < 4; ++i) frame[i] = static_cast<char>((length >> (8 * i)) & 0xff);
}

inline uint32_t load_length(const char* header) {
  uint32_t length = 0;
  for (size_t i = 0; i < 4; ++i) length |= uint32_t{static_cast<uint8_t>(header[i])} << (8 * i);
  return length;
}

// Reads a frame body field by field; `ok` turns false (and stays false) at the first field
// that runs past the end.
class Cursor {
 public:
  explicit Cursor(std::string_view body) : rest_(body) {}
  bool ok() const { return ok_; }
  bool done() const { return rest_.empty(); }

  template <typename Int>
  Int take_int() {
    if (!ok_ || rest_.size() < sizeof(Int)) {
      ok_ = false;
      return Int{};
    }
    uint64_t value = 0;
    for (size_t i = 0; i < sizeof(Int); ++i) {
      value |= uint64_t{static_cast<uint8_t>(rest_[i])} << (8 * i);
    }
    rest_.remove_prefix(sizeof(Int));
    return static_cast<Int>(value);
  }

  std::string_view take_bytes() {
    const auto size = take_int<uint32_t>();
    if (!ok_ || rest_.size() < size) {
      ok_ = false;
      return {};
    }
    std::string_view bytes = rest_.substr(0, size);
    rest_.remove_prefix(size);
    return bytes;
  }

 private:
  std::string_view rest_;
  bool ok_ = true;
};

}  // namespace tapedeck::wire
