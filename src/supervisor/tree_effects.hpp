// What the tree's processes report, turned into records (record) or served from the recording
// (replay): clock reads and sleeps (tree_effects.cpp), workspace files (file_effects.cpp),
// subprocesses and the workspace changes they make (spawn_effects.cpp); and the same for the
// calls the system-call floor serves for a root the preload cannot reach (floor_effects.cpp).
//
// Every record either mode makes goes through here, on the serving thread, in the order the
// processes reported; in replay each record other than a clock read also moves the shared clock
// to the recording's next stretch. A request this cannot serve stops the tree (answer_miss).
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "floor/floor.hpp"
#include "preload/wire.hpp"
#include "supervisor/code_rule.hpp"
#include "supervisor/output_capture.hpp"
#include "supervisor/private_world.hpp"
#include "supervisor/recording_index.hpp"
#include "supervisor/supervisor.hpp"
#include "supervisor/tree_server.hpp"
#include "supervisor/workspace_view.hpp"
#include "supervisor/workspace_watch.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/faults.hpp"
#include "tapedeck/testbench.hpp"

namespace tapedeck::supervisor {

class TreeEffects : public floor::Services {
 public:
  // `session` is null when nothing is taped; `view` is the workspace itself when recording.
  TreeEffects(const RunOptions& options, Session* session, TreeServer& server,
              const WorkspaceView& view, const std::filesystem::path& run_dir);

  // The program runs in a pid namespace of its own: subprocesses' pids are counted and replayed.
  void set_pid_namespace(bool on) { pid_namespace_ = on; }

  // floor::Services (floor_effects.cpp): the same records as the preload's reports make.
  int64_t clock_read(pid_t pid, bool wall, int64_t real_ms, std::string_view lane) override;
  bool sleep(pid_t pid, uint64_t ms) override;
  int open(pid_t pid, uint32_t thread_rank, const std::string& path, bool writes,
           bool reads_too) override;
  void closing(pid_t pid, uint32_t thread_rank, const std::string& path) override;
  void deleting(pid_t pid, uint32_t thread_rank, const std::string& path) override;
  void renamed(pid_t pid, uint32_t thread_rank, const std::string& from,
               const std::string& to) override;
  std::string entropy(pid_t process, uint32_t thread_rank, size_t size) override;
  std::string thread_lane(pid_t process, uint32_t rank) override;
  // Each thread a process starts draws from a stream of its own (the tape's entropy record says).
  void set_entropy_per_thread(bool on) { entropy_per_thread_ = on; }
  std::string startup_random() override;
  // A process that continues a preloaded one, followed by the floor (FloorFollower): its
  // randomness goes on under `key`, the preload's stream key for its image (entropy_exec_entry),
  // and its AT_RANDOM bytes are drawn under that key. Returns the stream's name (the root's
  // "0" for no key).
  const std::string& name_entropy_stream(pid_t process, const std::string& key);
  std::string startup_random(const std::string& key);
  // The run's entropy seed (64 hex digits), which the floor's randomness is drawn from.
  void set_entropy_seed(const std::string& seed_hex);
  std::vector<std::string> exec_wrapper() override;
  int64_t runtime_clock_ns(pid_t pid, int64_t real_ns) override;
  bool waits_are_virtual() const override;
  bool skip_wait(pid_t pid, uint64_t ms) override;
  void wait_runs(pid_t pid) override;
  // The run is over: files the floor's processes wrote are taped as they are now.
  void settle_all();

  // The serving thread's handler of every frame.
  void handle(const Connection& connection, wire::Op op, std::string_view body);
  // Puts the run's entropy seed on the tape (tapedeck's `entropy` record), before the program
  // starts: a replay draws its randomness from the same seed.
  void record_entropy_seed(const std::string& seed_hex, bool per_thread);
  // The run's outcome, last on the tape in the runtime_finalize phase (tapedeck's `outcome`
  // record): the program's exit code and the digests of what it printed (the bytes themselves in
  // the sidecar up to a megabyte, unless they hold a credential).
  void record_outcome(int exit_code, const CapturedOutput& out, const CapturedOutput& err);
  // An LLM call moves a replay's clock on, as any record does. A preloaded program announces its
  // request before sending it, with its batched clock reads settled: the recording has the
  // reads made before the request ahead of the call's record and those made while the answer
  // came after it (they reach the tape later), so the clock moves at the announcement. A call
  // nobody announced (a program under the floor, whose reads are taped as they come, the
  // streamed ones before the record) moves it when its record is made, as the others do.
  void llm_request_announced(std::optional<uint64_t> thread) {
    ++llm_announced_;
    static const RecordKind kLlmCall = kind::LlmCall{};
    step_clock(&kLlmCall, thread);
  }
  // The LLM proxy is handling a request: a replay's time does not jump meanwhile (skip_wait).
  // Called from the proxy's threads, as the two below.
  void llm_call_started() {
    ++llm_in_flight_;
    if (!take_one(llm_announced_)) ++llm_unannounced_;
  }
  // The proxy served a call (its record is made; a stream's last event not handed over yet).
  void llm_call_served();
  void llm_call_finished() { --llm_in_flight_; }
  // Replay: a fault was injected (--fault). The run has left the recording: from here a wait
  // that finds nothing ready is skipped and taped (a client's backoff before its retry costs no
  // wall time), matched to the recording's or not, once the tree is idle (may_pass).
  void fault_injected() { faulted_ = true; }
  // Replay: `ms` of the program's time pass (a slowed stream's gap between events).
  void pass_time(uint64_t ms);
  // Replay, at the end of a stream whose call no preload announced (a program under the floor):
  // waits up to 250 ms for the tree to be idle, as the program was when the upstream's end came.
  void before_stream_end();
  // Replay: the answer to thread `tid`'s wait of `ms`, ending at `deadline_ms` on the replayed
  // monotonic clock, that found nothing ready, or to its sleep (Op::timed_wait): ok when it is
  // skipped (its sleep is taped and the clock moves past it).
  wire::Reply timed_wait(const Connection& asking, uint64_t ms, pid_t tid, int64_t deadline_ms,
                         bool sleep, uint64_t thread);
  // A wait of thread `owner` (ThreadKey, packed) that timed out (Event::waited).
  void record_wait(uint64_t ms, std::optional<uint64_t> owner = {});

  const std::string& workspace() const { return workspace_; }
  // Where the replay's clock map is, for the program's environment (a recording names the same
  // place, never made, so that the two environments are alike).
  std::string clock_map_path() const;
  // Record: the inotify queue the serving thread drains, and why it could not be had.
  WorkspaceWatch& watch() { return watch_; }
  const std::string& watch_warning() const { return watch_warning_; }
  // The run's /tmp is its own (private_world.hpp); `root_fd` is its root in the tree's namespace
  // (taken over). Record watches what the tree writes there (the overlay's upper, in the run's
  // folder), so that what a tool left there is taped with its spawn; replay makes it there again.
  void use_private_temp(int root_fd);
  // Why what tools changed in /tmp is not (fully) taped or made again (empty: it is).
  const std::string& temp_warning() const { return temp_warning_; }
  // Files as the run found them. A file of the workspace, or of the home folder outside it, that a
  // process of the tree is about to change for the first time in the run (wire::Op::
  // about_to_change) is taped as it is then, `found`: a file_read of its bytes, or a file_delete
  // when there was none; a home file's path is `/~/` then its path beneath the home. A replay
  // tapes the recording's record again at the same place, and its views start with each such
  // file as the recording found it (home_seeds, seed_workspace), so the program reads what the
  // recording read whatever the workspace and home hold now (a recording's own changes, say).
  // `home`: canonical; none beneath /tmp (the run's own already).
  void use_home(const std::filesystem::path& home);
  const std::string& home() const { return home_; }
  // Replay: the home's files as the recording found them (those whose bytes the recorded
  // sidecar lacks are left out).
  std::vector<HomeFileFound> home_seeds();
  // Replay: puts the workspace's files as the recording found them in the view, before the
  // program starts (not the program's code, which is read as it is now).
  void seed_workspace();
  // Workspace files and outputs kept redacted because they held a credential.
  uint64_t withheld() const { return withheld_; }
  std::pair<uint64_t, std::string> unused_inputs() const;
  // Replay: inputs served from the tape to a process that ran (an LLM answer, a data file's
  // bytes, a sleep) and workspace files it wrote or deleted itself, against subprocess results
  // played back; see RunOutcome::hollow.
  uint64_t served_inputs() const { return served_inputs_.load(); }
  uint64_t played_back() const { return played_back_; }
  // Replay: what a user should know of the run that is no divergence (a data file changed
  // since the recording, served as recorded).
  const std::vector<std::string>& notes() const { return notes_; }
  // Programs a process of the tree exec'd in place of itself that neither the preload nor the
  // floor serve (statically linked, Go): each named once, with what goes untaped.
  const std::vector<std::string>& unserved_execs() const { return unserved_execs_; }
  // How a static program the preload cannot reach, exec'd in place by a process of the root's
  // own tree, is served by the floor (wire::Op::exec_followed): `follow` has the floor follow
  // process `pid` from its next exec, of `program`, its randomness drawn under `entropy_key`;
  // Unset: such programs run unserved, and are named.
  using FloorFollower =
      std::function<void(pid_t pid, const std::string& program, const std::string& entropy_key)>;
  void follow_execs_with(FloorFollower follow) { follow_exec_ = std::move(follow); }

 private:
  Recorder& recorder() { return session_->recorder(); }
  // (RecordingIndex::step_clock)
  void step_clock(const RecordKind* replayed = nullptr, std::optional<uint64_t> owner = {});
  std::optional<std::string> relative(std::string_view absolute) const;
  // Keeps `bytes` in the written tape's sidecar, redacted (a credential the program was given,
  // or one shaped like it): what the tape names (its hash, its length) is the redacted bytes.
  std::pair<std::string, uint64_t> keep(std::string bytes);
  // Writes the sidecar entry `hash` unless it is there already.
  void write_entry(const std::string& hash, const std::string& bytes);
  // A file record, taped (replay: a step of the clock). `owner`: the thread whose call made it
  // (wire::kUnkeyedThread's absence: unknown), named on the record when threads are keyed.
  void add_file_record(RecordKind kind);
  void add_file_record(RecordKind kind, std::optional<uint64_t> owner);
  void record_read(const std::string& path, const std::string& bytes, bool code);
  void record_write(const std::string& path, const std::string& bytes);

  void handle_events(wire::Cursor& cursor);
  // A sleep of `ms` taped (replay: the session's clock moves past it first), and the clock
  // map's stretch stepped.
  // `looked_past`: recorded waits the replay's wait went past (RecordingIndex::next_wait_near).
  void record_sleep(uint64_t ms, bool waited = false, uint64_t looked_past = 0,
                    std::optional<uint64_t> owner = {});

  // file_effects.cpp
  void handle_file(const Connection& connection, wire::Op op, wire::Cursor& cursor);
  void handle_rename(const Connection& connection, wire::Cursor& cursor);
  // How `program`, exec'd in place by the process of `connection`, is to be run.
  wire::FloorFollow exec_in_place(const Connection& connection, std::string_view program);
  void handle_exec_followed(const Connection& connection, wire::Cursor& cursor);
  void name_unserved_exec(std::string_view program, Linkage linkage, const std::string& why = {});
  // A file report answered as the mode has it: record_file tapes it, replay_file serves it.
  void file_effect(const Connection& connection, wire::Op op, const std::string& path,
                   uint8_t flags = 0);
  void record_file(const Connection& connection, wire::Op op, const std::string& path);
  void replay_file(const Connection& connection, wire::Op op, const std::string& path,
                   uint8_t flags);
  bool serve_read(const Connection& connection, const std::string& path);
  void note_data_change(const std::string& path, const std::string& recorded_hash,
                        const std::optional<std::string>& now);
  std::optional<std::string> current_bytes(const std::string& path) const;
  std::optional<std::string> recorded_bytes(const std::string& path, const std::string& hash);
  void reported(const std::string& path, std::optional<std::string> content_hash);
  // floor_effects.cpp: tapes a file a floor-served process wrote if it changed since.
  void settle(pid_t pid, const std::string& path, std::pair<off_t, int64_t>& taped);

  // Record: every subprocess runs under the preload, and what it tapes is held until it proves
  // part of the agent (it, or a process it started, announces an LLM request: the held records
  // of it and of every subprocess above it go on the tape, in order, and it is `descended`) or
  // it ends a tool (dropped: its process_spawn and the changes inotify saw stand for it).
  struct Held {
    std::vector<std::function<void()>> steps;  // its records, to be made on the tape
    std::map<std::string, std::string> bytes;  // the sidecar entries they name
  };
  // What a tool changed, as each watch took it: in the workspace, and in the private /tmp.
  struct SubprocessChanges {
    WorkspaceWatch::Taken workspace;
    WorkspaceWatch::Taken temp;
  };
  struct SpawnState {
    uint64_t parent = 0;   // the subprocess that started it; 0: the root's tree
    bool on_path = false;  // part of the agent
    Held held;
    // Changes its own subprocesses were taped with (held): its own if it is dropped.
    std::vector<SubprocessChanges> taken;
  };
  std::map<uint64_t, SpawnState> spawns_;  // record: by place in the start order, while alive
  // Record: subprocesses that ended as tools. What a process they left behind sends later is
  // theirs, and dropped with them.
  std::set<uint64_t> ended_tools_;
  // Where the records of the frame being handled go, when they are held: set by the serving
  // thread for the frame it handles, and seen by it alone (the floor's and the proxy's threads
  // record as they go).
  Held* hold_ = nullptr;
  std::thread::id hold_thread_;
  Held* held_here() const {
    return hold_ != nullptr && std::this_thread::get_id() == hold_thread_ ? hold_ : nullptr;
  }
  // Sets hold_ for this thread, and puts it back when it goes.
  class HoldScope {
   public:
    HoldScope(TreeEffects& effects, Held* held)
        : effects_(effects), before_(effects.hold_), thread_before_(effects.hold_thread_) {
      effects_.hold_ = held;
      effects_.hold_thread_ = std::this_thread::get_id();
    }
    ~HoldScope() {
      effects_.hold_ = before_;
      effects_.hold_thread_ = thread_before_;
    }
    HoldScope(const HoldScope&) = delete;
    HoldScope& operator=(const HoldScope&) = delete;

   private:
    TreeEffects& effects_;
    Held* before_;
    std::thread::id thread_before_;
  };
  static std::optional<uint64_t> file_owner(uint64_t thread);
  // The thread whose file report the serving thread handles (its frame's key, or the floor's
  // thread), while it does; and the serving thread, so that no other thread takes it as its own.
  std::optional<uint64_t> file_owner_;
  std::thread::id file_owner_thread_;
  std::optional<uint64_t> file_owner_here() const {
    return std::this_thread::get_id() == file_owner_thread_ ? file_owner_ : std::nullopt;
  }
  class FileOwnerScope {
   public:
    FileOwnerScope(TreeEffects& effects, std::optional<uint64_t> owner) : effects_(effects) {
      effects_.file_owner_ = owner;
      effects_.file_owner_thread_ = std::this_thread::get_id();
    }
    ~FileOwnerScope() {
      effects_.file_owner_.reset();
      effects_.file_owner_thread_ = {};
    }
    FileOwnerScope(const FileOwnerScope&) = delete;
    FileOwnerScope& operator=(const FileOwnerScope&) = delete;

   private:
    TreeEffects& effects_;
  };
  bool holding(uint64_t spawn) const;
  bool named_black_box(const std::string& program) const;  // --black-box
  // `spawn` and the subprocesses above it are part of the agent: their held records are taped.
  void put_on_path(uint64_t spawn);
  // Replay: descended subprocesses run again (their place in the start order).
  std::set<uint64_t> live_spawns_;
  void answer_live(const Connection& connection, const ProcessResult& result);
  void record_spawn(const std::string& program, const std::vector<std::string>& args,
                    const std::optional<std::string>& cwd, const ProcessResult& result);

  // spawn_effects.cpp
  void handle_spawn(const Connection& connection, wire::Op op, wire::Cursor& cursor);
  void answer_spawn(const Connection& connection, const ProcessResult& result);
  SubprocessChanges record_subprocess_changes();
  void tape_changes(const WorkspaceWatch::Taken& taken, const std::filesystem::path& root,
                    const std::string& prefix);
  void give_back(const SubprocessChanges& changes);
  void apply_subprocess_changes(const kind::ProcessSpawn* recorded);
  // Replay: the view a recorded path is made in and the path within it (null: the replay has no
  // private /tmp for a path in the recording's).
  std::pair<const WorkspaceView*, std::string> view_of(const std::string& path);
  void handle_about_to_change(const Connection& connection, wire::Cursor& cursor);
  void index_found();  // replay: found_recorded_, from the recording
  void apply_tree_change(const extension::TreeChange& change,
                         std::vector<std::pair<std::string, uint32_t>>& folder_modes);

  const RunOptions& options_;
  Session* session_;
  TreeServer& server_;
  const WorkspaceView& view_;
  std::filesystem::path run_dir_;
  std::string workspace_;
  std::filesystem::path cas_dir_;           // the written tape's sidecar
  std::filesystem::path recorded_cas_dir_;  // replay: the recorded tape's
  std::set<std::string> kept_;              // entries already in it
  uint64_t withheld_ = 0;
  std::unique_ptr<RecordingIndex> index_;  // replay
  CodeRule code_rule_;
  std::atomic<uint64_t> served_inputs_{0};
  uint64_t played_back_ = 0;
  std::vector<std::string> notes_;
  std::set<std::string> noted_;  // paths a note was made for
  // Replay: paths whose bytes the replay wrote itself (the view's answer is then its own).
  std::set<std::string> written_;
  WorkspaceWatch watch_;  // record
  // The private /tmp: record watches the overlay's upper; replay writes through its root.
  WorkspaceWatch temp_watch_;
  std::optional<WorkspaceView> temp_view_;
  std::string temp_warning_;
  std::string home_;               // (canonical; empty: none)
  std::set<std::string> found_;    // paths (the tape's) announced as about to change
  std::set<std::string> touched_;  // paths (the tape's) the run has a file record of
  std::map<std::string, RecordKind> found_recorded_;  // replay: the recording's, by path
  bool found_indexed_ = false;
  uint64_t subprocesses_running_ = 0;  // record: started and not yet ended
  bool pid_namespace_ = false;
  // Workspace files a floor-served process opened to write, with the (size, mtime) they were
  // last taped at: taped again when that changes.
  std::map<std::string, std::pair<off_t, int64_t>> floor_writes_;
  // Replay: when each thread under the floor last read each clock, in real time (a thread held
  // up for real moves a replay's clock on past the recording's reads: preload::take).
  std::mutex floor_reads_mutex_;
  std::map<std::pair<pid_t, int>, int64_t> floor_read_at_ms_;
  // Replay: the clock a Go runtime reads for itself (nanoseconds; see floor.hpp).
  int64_t runtime_ns_ = 0;
  std::atomic<int> llm_in_flight_{0};
  std::atomic<bool> faulted_{false};  // see fault_injected()
  // An LLM request announced, or one the proxy is handling: its answer may end a wait.
  bool llm_under_way() const { return llm_announced_.load() > 0 || llm_in_flight_.load() > 0; }
  // Replay: thread `tid` asks about its wait or sleep until `deadline_ms`.
  void note_asking(pid_t tid, int64_t deadline_ms);
  // Replay: whether that wait or sleep may be skipped now, for `asking`'s process.
  bool may_pass(const Connection& asking, pid_t tid, int64_t deadline_ms);
  // Whether every thread of every process of the tree but those `waiting` (numbered as their
  // pid namespace does) is asleep, and none is making a TCP connection. Any thread may ask.
  bool tree_idle(const std::vector<pid_t>& waiting);
  // Waits up to 250 ms for tree_idle({}).
  void wait_for_idle();
  // Waits and sleeps asked about lately, by thread: where each ends, when it last asked.
  struct AskingWait {
    int64_t deadline_ms = 0;
    std::chrono::steady_clock::time_point asked;
  };
  std::map<pid_t, AskingWait> asking_waits_;
  ProcessFaults process_faults_{{}};  // replay --fault process#N, process:NAME#N
  // Replay: a --fault on a subprocess or a file struck; taped as what the program saw.
  void record_fault(std::string_view kind, const Fault& fault, std::string_view field,
                    std::string_view value);
  // Replay: the errno a --fault file:PATH makes a read of workspace path `path` fail with (the
  // fault taped), or 0.
  int file_fault(const std::string& path);
  // Counts one down unless it is zero; false when it was.
  static bool take_one(std::atomic<int>& count) {
    int seen = count.load();
    while (seen > 0 && !count.compare_exchange_weak(seen, seen - 1)) {
    }
    return seen > 0;
  }
  std::atomic<int> llm_announced_{0};    // announced requests the proxy has not taken yet
  std::atomic<int> llm_unannounced_{0};  // calls taken that nobody announced, not yet served
  std::atomic<bool> served_unannounced_{false};  // the call served last was one of those
  // The floor's randomness: the seed, and each process's place in the tree ("0" the root's,
  // as the preload names them) with how far into its stream it has drawn.
  std::string entropy_seed_;  // 32 bytes; empty when the run has none
  std::map<pid_t, std::pair<std::string, uint64_t>> entropy_streams_;
  // A floor-served thread's own stream (entropy_per_thread_): its offset, by its name.
  std::map<std::string, uint64_t> thread_streams_;
  bool entropy_per_thread_ = false;
  // The name of process `process`'s stream (the root's "0", a fork's "0.f1", …), made on first use.
  const std::string& stream_name(pid_t process);
  // That stream's place folded, as thread keys name a process (0: the root's own image).
  uint32_t stream_place(pid_t process);
  // Whether floor-served threads read in lanes of their own (see thread_lane).
  bool floor_threads_laned() const;
  // The thread key (ThreadKey, packed) a floor-served thread's file records name, when laned.
  std::optional<uint64_t> floor_file_owner(pid_t tid, uint32_t thread_rank);
  // Replay: recorded results claimed by the exec that starts a subprocess, by its pid.
  std::map<pid_t, ProcessResult> claimed_spawns_;
  uint64_t spawns_started_ = 0;      // record: subprocesses claimed so far
  int64_t paced_since_real_ns_ = 0;  // a wait ran in the kernel then (0: none since a skip)
  int64_t paced_from_ns_ = 0;        // the runtime's clock then
  std::string watch_warning_;
  std::vector<std::string> unserved_execs_;
  std::set<std::string, std::less<>> exec_in_place_seen_;
  FloorFollower follow_exec_;
};

bool is_regular(const std::filesystem::path& path);

}  // namespace tapedeck::supervisor
