#include "supervisor/supervisor.hpp"

#include <arpa/inet.h>
#include <elf.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "preload/clock_map.hpp"
#include "preload/wire.hpp"
#include "supervisor/workspace_view.hpp"
#include "supervisor/workspace_watch.hpp"
#include "tape/atomic_file.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/llm_proxy.hpp"
#include "tapedeck/testbench.hpp"

extern char** environ;

namespace tapedeck::supervisor {

namespace fs = std::filesystem;
using wire::Reply;

namespace {

void write_whole(const fs::path& path, std::string_view bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

bool is_regular(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);
}

// Whether `path` is `folder` or lies under it (both canonical).
bool inside(const fs::path& path, const fs::path& folder) {
  const auto [end, _] = std::mismatch(folder.begin(), folder.end(), path.begin(), path.end());
  return end == folder.end();
}

// A private folder for the run's socket, clock map and replay's view; gone at the end. In
// $TMPDIR, unless that lies in the workspace (a program's temporary files taped as workspace
// files): the view's scratch cannot live inside what it overlays, nor the run in what it tapes.
class RunDir {
 public:
  explicit RunDir(const fs::path& workspace) {
    const char* tmp = std::getenv("TMPDIR");
    std::string base;
    for (const char* candidate : {tmp, "/tmp", "/dev/shm", "/var/tmp"}) {
      std::error_code error;
      if (candidate == nullptr || *candidate == '\0') continue;
      const fs::path folder = fs::weakly_canonical(candidate, error);
      if (!error && fs::is_directory(folder, error) && !inside(folder, workspace)) {
        base = folder.string();
        break;
      }
    }
    if (base.empty()) {
      throw std::runtime_error("no folder for the run outside the workspace " + workspace.string() +
                               ": set TMPDIR to one");
    }
    std::string pattern = base + "/tapedeck-run-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("cannot make a run folder " + pattern + ": " + std::strerror(errno));
    }
    path_ = pattern;
  }
  ~RunDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// "family/hex-address/port" entries for the preload, from HOST[:PORT] rules resolved here.
std::string resolve_allowed(const std::vector<std::string>& rules) {
  std::string out;
  for (const std::string& rule : rules) {
    NetworkPolicy::Rule parsed;
    try {
      parsed = NetworkPolicy::parse(rule);
    } catch (const std::invalid_argument&) {
      throw std::runtime_error("--allow " + rule +
                               ": not HOST or HOST:PORT (a port from 1 to 65535)");
    }
    if (parsed.subdomains) {
      throw std::runtime_error("--allow " + rule +
                               ": the program connects to addresses, so name the hosts themselves");
    }
    const std::string& host = parsed.host;
    const unsigned port = parsed.port.value_or(0);  // 0: every port
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) {
      throw std::runtime_error("--allow " + rule + ": cannot resolve " + host);
    }
    for (addrinfo* at = found; at != nullptr; at = at->ai_next) {
      const uint8_t* bytes = nullptr;
      size_t size = 0;
      if (at->ai_family == AF_INET) {
        bytes = reinterpret_cast<const uint8_t*>(
            &reinterpret_cast<sockaddr_in*>(at->ai_addr)->sin_addr);
        size = 4;
      } else if (at->ai_family == AF_INET6) {
        bytes = reinterpret_cast<const uint8_t*>(
            &reinterpret_cast<sockaddr_in6*>(at->ai_addr)->sin6_addr);
        size = 16;
      } else {
        continue;
      }
      char hex[33] = {};
      for (size_t i = 0; i < size; ++i) std::snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
      if (!out.empty()) out += ',';
      out += std::to_string(at->ai_family) + "/" + hex + "/" + std::to_string(port);
    }
    ::freeaddrinfo(found);
  }
  return out;
}

std::string describe_spawn(const Record& record) {
  const auto& spawn = std::get<kind::ProcessSpawn>(record.kind);
  std::string text = "`" + spawn.program;
  for (const std::string& arg : spawn.args) text += " " + arg;
  return text + "`" + (spawn.cwd ? " in " + *spawn.cwd : std::string());
}

struct Connection {
  int fd = -1;
  pid_t pid = 0;
  std::string pending;  // bytes received, not yet a whole frame
};

class Server {
 public:
  Server(const RunOptions& options, Session* session, const fs::path& run_dir,
         const WorkspaceView& view)
      : options_(options),
        session_(session),
        run_dir_(run_dir),
        view_(view),
        recorded_(session != nullptr ? session->recorded_tape() : nullptr) {
    workspace_ = fs::weakly_canonical(options.workspace).string();
    if (options.mode == RunOptions::Mode::record) cas_dir_ = cas_dir_for(options.tape);
    if (options.mode == RunOptions::Mode::replay && options.emit)
      cas_dir_ = cas_dir_for(*options.emit);
    if (recorded_) index_recording();
    if (options.mode == RunOptions::Mode::record) {
      std::string why;
      if (!watch_.start(workspace_, why)) {
        watch_warning_ = "what subprocesses change in the workspace is not fully taped (" + why +
                         "): a replay will not make those changes";
      }
    }
    socket_path_ = (run_dir / "s").string();
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (socket_path_.size() >= sizeof address.sun_path) {
      throw std::runtime_error("the run folder's path is too long for a Unix socket: " +
                               socket_path_ + " (set TMPDIR to a shorter folder)");
    }
    std::strcpy(address.sun_path, socket_path_.c_str());
    if (listener_ < 0 ||
        ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 128) != 0) {
      throw std::runtime_error("cannot listen on " + socket_path_ + ": " + std::strerror(errno));
    }
  }

  ~Server() {
    for (Connection& connection : connections_) ::close(connection.fd);
    if (listener_ >= 0) ::close(listener_);
    if (clock_map_ != nullptr) ::munmap(clock_map_, clock_map_size_);
  }

  const std::string& socket_path() const { return socket_path_; }
  // The LLM proxy served a call (its record made).
  void llm_call_served() { step_clock(); }
  const std::string& workspace() const { return workspace_; }
  std::string clock_map_path() const { return (run_dir_ / "clock").string(); }

  void set_root(pid_t pid) {
    std::lock_guard lock(mutex_);
    root_ = pid;
  }

  // Serves until the root has exited and every connection closed (or `grace` passed since).
  void serve(const std::atomic<bool>& root_exited, std::chrono::milliseconds grace) {
    std::optional<std::chrono::steady_clock::time_point> deadline;
    while (true) {
      if (root_exited.load() && !deadline) deadline = std::chrono::steady_clock::now() + grace;
      if (deadline && (connections_.empty() || std::chrono::steady_clock::now() > *deadline)) {
        break;
      }
      std::vector<pollfd> fds;
      fds.push_back({listener_, POLLIN, 0});
      fds.push_back({watch_.fd(), POLLIN, 0});  // -1 (ignored by poll) when not watching
      for (const Connection& connection : connections_) fds.push_back({connection.fd, POLLIN, 0});
      const int ready = ::poll(fds.data(), fds.size(), 50);
      if (ready <= 0) continue;
      if (fds[0].revents & POLLIN) accept_one();
      if (fds[1].revents & POLLIN) watch_.drain();  // the kernel's queue is bounded
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        Connection& connection = connections_[i - 2];
        if (!receive(connection)) {
          ::close(connection.fd);
          connection.fd = -1;
        }
      }
      std::erase_if(connections_, [](const Connection& c) { return c.fd < 0; });
    }
  }

  // A replay met an input the tape does not hold: tell the user once, stop the whole tree.
  void stop_tree(const std::string& message) {
    std::lock_guard lock(mutex_);
    if (!miss_) miss_ = message;
    for (pid_t pid : pids_) ::kill(pid, SIGKILL);
    if (root_ > 0) ::kill(root_, SIGKILL);
  }

  // Why subprocesses' changes to the workspace are not (all) taped, or empty.
  const std::string& watch_warning() const { return watch_warning_; }

  // Files whose bytes were not kept because they hold a credential.
  uint64_t withheld() const { return withheld_; }

  std::optional<std::string> miss() {
    std::lock_guard lock(mutex_);
    return miss_;
  }

  // Recorded inputs the replay never asked for: file reads and subprocesses (clock reads past
  // the replay's own are left to fidelity: runtimes read the clock more or less each run).
  std::pair<uint64_t, std::string> unused_inputs() const {
    uint64_t unused = 0;
    std::string first;
    for (const auto& [path, queue] : file_reads_) {
      unused += queue.size();
      if (first.empty() && !queue.empty()) first = "file_read " + path;
    }
    if (spawns_served_ < recorded_spawns_.size()) {
      unused += recorded_spawns_.size() - spawns_served_;
      if (first.empty())
        first = "process_spawn " + describe_spawn(*recorded_spawns_[spawns_served_]);
    }
    return {unused, first};
  }

 private:
  void index_recording() {
    // Clock reads by stretch (see clock_map.hpp): a new stretch after every other record.
    std::vector<std::array<std::vector<int64_t>, 2>> stretches(1);
    uint64_t values = 0;
    const kind::ProcessSpawn* last_spawn = nullptr;  // a subprocess's changes follow its spawn
    for (const Record& record : recorded_->records) {
      if (const auto* read = std::get_if<kind::ClockRead>(&record.kind)) {
        stretches.back()[read->source == ClockSource::wall ? 0 : 1].push_back(read->value_ms);
        ++values;
        continue;
      }
      stretches.emplace_back();
      if (const auto* file = std::get_if<kind::FileRead>(&record.kind)) {
        file_reads_[file->path].push_back(file);
      } else if (const auto* spawn = std::get_if<kind::ProcessSpawn>(&record.kind)) {
        recorded_spawns_.push_back(&record);
        last_spawn = spawn;
      } else if (last_spawn != nullptr && is_subprocess_change(record.kind)) {
        subprocess_changes_[last_spawn].push_back(&record.kind);
      }
    }
    clock_map_size_ = preload::ClockMap::bytes_for(stretches.size(), values);
    const std::string path = clock_map_path();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(clock_map_size_)) != 0) {
      throw std::runtime_error("cannot make the replay clock map " + path);
    }
    void* mapped = ::mmap(nullptr, clock_map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (mapped == MAP_FAILED) throw std::runtime_error("cannot map " + path);
    clock_map_ = new (mapped) preload::ClockMap();
    clock_map_->magic = preload::ClockMap::kMagic;
    clock_map_->stretch_count = stretches.size();
    std::optional<int64_t> first[2];
    uint64_t offset = 0;
    for (size_t k = 0; k < stretches.size(); ++k) {
      auto* stretch = new (&clock_map_->stretches()[k]) preload::ClockStretch();
      for (int source = 0; source < 2; ++source) {
        stretch->start[source] = offset;
        stretch->count[source] = stretches[k][source].size();
        for (int64_t value : stretches[k][source]) {
          if (!first[source]) first[source] = value;
          clock_map_->values()[offset++] = value;
        }
      }
    }
    const int64_t start = recorded_->header.started_at_unix_ms.value_or(0);
    clock_map_->latest_ms[0] = first[0].value_or(start);
    clock_map_->latest_ms[1] = first[1].value_or(0);
  }

  // The replay made a record other than a clock read: the clock moves to the reads the
  // recording made after its counterpart.
  void step_clock() {
    if (clock_map_ != nullptr) clock_map_->stretch.fetch_add(1, std::memory_order_release);
  }

  void accept_one() {
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    Connection connection;
    connection.fd = fd;
    ucred credentials{};
    socklen_t size = sizeof credentials;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0) {
      connection.pid = credentials.pid;
      std::lock_guard lock(mutex_);
      pids_.insert(credentials.pid);
    }
    connections_.push_back(std::move(connection));
  }

  // Reads what is there and handles every whole frame; false at end of stream.
  bool receive(Connection& connection) {
    char buffer[1 << 16];
    const ssize_t got = ::recv(connection.fd, buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) return true;
    if (got <= 0) {
      std::lock_guard lock(mutex_);
      pids_.erase(connection.pid);
      return false;
    }
    connection.pending.append(buffer, static_cast<size_t>(got));
    size_t at = 0;
    while (connection.pending.size() - at >= wire::kHeaderBytes) {
      const uint32_t length = wire::load_length(connection.pending.data() + at);
      if (length < 1 || length > wire::kMaxFrameBytes) return false;  // not one of ours
      if (connection.pending.size() - at < 4 + length) break;
      const auto op = static_cast<uint8_t>(connection.pending[at + 4]);
      const std::string_view body(connection.pending.data() + at + wire::kHeaderBytes, length - 1);
      handle(connection, static_cast<wire::Op>(op), body);
      at += 4 + length;
    }
    connection.pending.erase(0, at);
    return true;
  }

  void answer(const Connection& connection, Reply reply, const std::string& body = {}) {
    std::string frame;
    wire::begin_frame(frame, static_cast<uint8_t>(reply));
    frame += body;
    wire::store_length(frame.data(), frame.size());
    std::string_view rest = frame;
    while (!rest.empty()) {
      const ssize_t sent = ::send(connection.fd, rest.data(), rest.size(), MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return;  // the process is gone; its end of stream closes the connection
      rest.remove_prefix(static_cast<size_t>(sent));
    }
  }

  void answer_miss(const Connection& connection, const std::string& message) {
    stop_tree(message);
    std::string body;
    wire::put_bytes(body, message);
    answer(connection, Reply::miss, body);
  }

  std::optional<std::string> relative(std::string_view absolute) const {
    if (absolute.size() <= workspace_.size() + 1 || !absolute.starts_with(workspace_) ||
        absolute[workspace_.size()] != '/') {
      return std::nullopt;
    }
    return std::string(absolute.substr(workspace_.size() + 1));
  }

  Recorder& recorder() { return session_->recorder(); }

  // Keeps the bytes in the written tape's sidecar (file records name them by content_hash),
  // unless they hold a credential: then only their hash reaches the tape.
  std::string keep(const std::string& bytes) {
    const std::string hash = content_hash(bytes);
    if (recorder().holds_secret(bytes)) {
      ++withheld_;
      return hash;
    }
    if (!cas_dir_.empty() && kept_.insert(hash).second) {
      cas::write_entries(cas_dir_, {{hash, bytes}}, /*durable=*/false);
    }
    return hash;
  }

  // Every file record, in both modes; in replay each is also a step of the clock.
  void add_file_record(RecordKind kind) {
    recorder().record(std::move(kind));
    step_clock();
  }

  void record_read(const std::string& path, const std::string& bytes) {
    add_file_record(kind::FileRead{path, keep(bytes), bytes.size()});
  }

  void record_write(const std::string& path, const std::string& bytes) {
    add_file_record(kind::FileWrite{path, keep(bytes), bytes.size()});
  }

  void handle(const Connection& connection, wire::Op op, std::string_view body) {
    wire::Cursor cursor(body);
    try {
      switch (op) {
        case wire::Op::events:
          return handle_events(cursor);
        case wire::Op::sync:
          return answer(connection, Reply::ok);
        case wire::Op::spawn_done:
        case wire::Op::spawn_replay:
          return handle_spawn(connection, op, cursor);
        case wire::Op::renamed:
          return handle_rename(connection, cursor);
        default:
          return handle_file(connection, op, cursor);
      }
    } catch (const std::exception& error) {
      answer_miss(connection, std::string("tapedeck could not serve a request: ") + error.what());
    }
  }

  void handle_events(wire::Cursor& cursor) {
    while (!cursor.done()) {
      const auto event = static_cast<wire::Event>(cursor.take_int<uint8_t>());
      const auto value = cursor.take_int<int64_t>();
      if (!cursor.ok()) return;
      switch (event) {
        case wire::Event::wall_read:
          recorder().record(kind::ClockRead{ClockSource::wall, value});
          break;
        case wire::Event::monotonic_read:
          recorder().record(kind::ClockRead{ClockSource::monotonic, value});
          break;
        case wire::Event::sleep:
          if (options_.mode == RunOptions::Mode::replay) {
            session_->clock().advance_ms(static_cast<uint64_t>(value));
          }
          recorder().record(kind::ClockSleep{static_cast<uint64_t>(value)});
          step_clock();
          break;
      }
    }
  }

  void handle_spawn(const Connection& connection, wire::Op op, wire::Cursor& cursor) {
    const std::string program(cursor.take_bytes());
    std::vector<std::string> args(cursor.take_int<uint32_t>());
    for (std::string& arg : args) {
      if (!cursor.ok()) break;
      arg = std::string(cursor.take_bytes());
    }
    const std::string cwd_absolute = view_.untranslate(std::string(cursor.take_bytes()));
    if (!cursor.ok()) throw std::runtime_error("a malformed subprocess report");
    // Inside the workspace the cwd is kept relative, so a tape replays in a copy elsewhere.
    std::optional<std::string> cwd = cwd_absolute;
    if (cwd_absolute == workspace_) {
      cwd = ".";
    } else if (auto inside = relative(cwd_absolute)) {
      cwd = *inside;
    }
    if (op == wire::Op::spawn_done) {
      ProcessResult result;
      result.exit_code = cursor.take_int<int32_t>();
      result.duration_ms = cursor.take_int<uint64_t>();
      result.stdout_bytes = std::string(cursor.take_bytes());
      result.stderr_bytes = std::string(cursor.take_bytes());
      if (!cursor.ok()) throw std::runtime_error("a malformed subprocess report");
      session_->processes().record_finished(program, args, cwd, result);
      record_subprocess_changes();
      return answer(connection, Reply::ok);
    }
    ProcessResult result;
    try {
      result = session_->processes().run(program, args, cwd);
    } catch (const ReplayMiss& miss) {
      std::string expected = "the tape holds no more subprocesses";
      if (spawns_served_ < recorded_spawns_.size()) {
        const Record& next = *recorded_spawns_[spawns_served_];
        expected = "the next recorded one is seq " + std::to_string(next.seq) + " process_spawn " +
                   describe_spawn(next);
      }
      return answer_miss(connection, std::string(miss.what()) + "; " + expected);
    }
    ++spawns_served_;
    step_clock();
    apply_subprocess_changes(result.recorded);
    std::string body;
    wire::put_int(body, result.exit_code);
    wire::put_bytes(body, result.stdout_bytes);
    wire::put_bytes(body, result.stderr_bytes);
    answer(connection, Reply::spawned, body);
  }

  static bool is_subprocess_change(const RecordKind& kind) {
    if (const auto* write = std::get_if<kind::FileWrite>(&kind)) return write->by_subprocess;
    if (const auto* gone = std::get_if<kind::FileDelete>(&kind)) return gone->by_subprocess;
    return false;
  }

  // Record: a subprocess ended; what changed in the workspace that no process reported itself
  // is its doing, taped right after its spawn so that a replay can make the same changes.
  void record_subprocess_changes() {
    for (const std::string& path : watch_.take_changes()) {
      const fs::path where = fs::path(workspace_) / path;
      std::error_code error;
      const fs::file_status status = fs::symlink_status(where, error);
      if (fs::is_regular_file(status)) {
        if (auto bytes = detail::read_file(where)) {
          add_file_record(kind::FileWrite{path, keep(*bytes), bytes->size(), true});
        }
      } else if (!fs::exists(status)) {
        add_file_record(kind::FileDelete{path, true});
      }
    }
  }

  // Replay: the subprocess served from `recorded` is not run, so its recorded changes to the
  // workspace are made in the view, and taped as the recording taped them.
  void apply_subprocess_changes(const kind::ProcessSpawn* recorded) {
    const auto found = subprocess_changes_.find(recorded);
    if (found == subprocess_changes_.end()) return;
    for (const RecordKind* change : found->second) {
      if (const auto* write = std::get_if<kind::FileWrite>(change)) {
        const std::optional<std::string> bytes =
            recorded_bytes(kind::FileRead{write->path, write->content_hash, write->len_bytes});
        if (!bytes) {
          throw std::runtime_error("the tape's bytes for " + write->path +
                                   ", written by a subprocess, are missing from its sidecar");
        }
        write_whole(view_.path(write->path), *bytes);
        written_.erase(write->path);  // the view holds what the recording's file held
      } else if (const auto* gone = std::get_if<kind::FileDelete>(change)) {
        std::error_code ignored;
        fs::remove(view_.path(gone->path), ignored);
        written_.erase(gone->path);
      }
      add_file_record(*change);
    }
  }

  void handle_file(const Connection& connection, wire::Op op, wire::Cursor& cursor) {
    const std::string_view absolute = cursor.take_bytes();
    const uint8_t flags = op == wire::Op::open_write ? cursor.take_int<uint8_t>() : 0;
    if (!cursor.ok()) throw std::runtime_error("a malformed file report");
    const std::optional<std::string> path = relative(absolute);
    if (!path) return answer(connection, Reply::ok);
    if (options_.mode == RunOptions::Mode::record) return record_file(connection, op, *path);
    replay_file(connection, op, *path, flags);
  }

  // The bytes of a workspace path as the run sees it now (record: the workspace; replay: the
  // view), when it is a regular file.
  std::optional<std::string> current_bytes(const std::string& path) const {
    const fs::path where = view_.path(path);
    if (!is_regular(where)) return std::nullopt;
    return detail::read_file(where);
  }

  // A rename with one side or both in the workspace (absolute paths), reported once done: the
  // new path's bytes become a file_write, the old path a file_delete, in both modes.
  void handle_rename(const Connection& connection, wire::Cursor& cursor) {
    const std::string from(cursor.take_bytes());
    const std::string to(cursor.take_bytes());
    if (!cursor.ok()) throw std::runtime_error("a malformed rename report");
    const std::optional<std::string> from_path = relative(from);
    const std::optional<std::string> to_path = relative(to);
    if (from_path) reported(*from_path);
    if (to_path) reported(*to_path);
    if (to_path) {
      if (auto bytes = current_bytes(*to_path)) record_write(*to_path, *bytes);
      written_.insert(*to_path);
    }
    if (from_path) {
      add_file_record(kind::FileDelete{*from_path});
      written_.erase(*from_path);
    }
    answer(connection, Reply::ok);
  }

  // A change a process of the tree reported itself is not a subprocess's.
  void reported(const std::string& path) {
    watch_.drain();
    watch_.forget(path);
  }

  void record_file(const Connection& connection, wire::Op op, const std::string& path) {
    if (op == wire::Op::deleted || op == wire::Op::closed_write) reported(path);
    if (op == wire::Op::deleted) {
      add_file_record(kind::FileDelete{path});
      return answer(connection, Reply::ok);
    }
    // The bytes are taken before the process goes on (it may change the file next); hashing
    // and keeping them overlap with its next steps.
    const std::optional<std::string> bytes = current_bytes(path);
    answer(connection, Reply::ok);
    if (!bytes) return;
    if (op == wire::Op::open_read) record_read(path, *bytes);
    if (op == wire::Op::closed_write) record_write(path, *bytes);
  }

  // The next recorded read of `path`, consumed; nullopt when the tape holds no more.
  const kind::FileRead* take_recorded_read(const std::string& path) {
    auto found = file_reads_.find(path);
    if (found == file_reads_.end() || found->second.empty()) return nullptr;
    const kind::FileRead* read = found->second.front();
    found->second.pop_front();
    return read;
  }

  // The bytes a recorded read saw: from the recording's sidecar, else from the workspace if
  // they still hash the same.
  std::optional<std::string> recorded_bytes(const kind::FileRead& read) {
    const fs::path recorded_cas = cas_dir_for(options_.tape);
    try {
      return cas::read_entry(recorded_cas, read.content_hash);
    } catch (const std::exception&) {
    }
    auto bytes = detail::read_file(fs::path(workspace_) / read.path);
    if (bytes && content_hash(*bytes) == read.content_hash) return bytes;
    return std::nullopt;
  }

  // Replay: the program is about to read `path`. When the recording read it here and the replay
  // has not written it since, the view is made to hold the recorded bytes first (a workspace
  // file changed since, or made by a subprocess the replay does not run, reads as recorded);
  // otherwise the view answers as it is. Either way the read is taped.
  // False when the tape's bytes are gone (the program is stopped).
  bool serve_read(const Connection& connection, const std::string& path) {
    const kind::FileRead* recorded = take_recorded_read(path);
    if (recorded != nullptr && !written_.contains(path)) {
      auto bytes = recorded_bytes(*recorded);
      if (!bytes) {
        answer_miss(connection, "the tape's bytes for file_read " + path + " (" +
                                    recorded->content_hash +
                                    ") are in neither its sidecar nor the workspace");
        return false;
      }
      const fs::path where = view_.path(path);
      std::error_code error;
      if (!fs::is_directory(where, error) && current_bytes(path) != bytes) {
        write_whole(where, *bytes);
      }
      add_file_record(kind::FileRead{path, recorded->content_hash, bytes->size()});
      return true;
    }
    // Not on the tape (or the replay's own bytes): the view answers, and the read is taped so
    // that fidelity shows it.
    if (auto bytes = current_bytes(path)) record_read(path, *bytes);
    return true;
  }

  void replay_file(const Connection& connection, wire::Op op, const std::string& path,
                   uint8_t flags) {
    switch (op) {
      case wire::Op::open_read:
        if (!serve_read(connection, path)) return;
        break;
      case wire::Op::open_write: {
        const bool reads_too = (flags & 2) != 0;
        if (reads_too && !serve_read(connection, path)) return;
        written_.insert(path);
        break;
      }
      case wire::Op::closed_write:
        if (auto bytes = current_bytes(path)) record_write(path, *bytes);
        written_.insert(path);
        break;
      case wire::Op::deleted:
        add_file_record(kind::FileDelete{path});
        written_.erase(path);
        break;
      default:
        break;
    }
    answer(connection, Reply::ok);
  }

  const RunOptions& options_;
  Session* session_;
  fs::path run_dir_;
  const WorkspaceView& view_;  // record: the workspace itself
  const Tape* recorded_;       // replay: the session's
  std::string workspace_;
  fs::path cas_dir_;
  std::set<std::string> kept_;
  uint64_t withheld_ = 0;
  std::string socket_path_;
  int listener_ = -1;
  std::vector<Connection> connections_;

  std::mutex mutex_;  // the fields below: the proxy's threads stop the tree too
  std::set<pid_t> pids_;
  pid_t root_ = 0;
  std::optional<std::string> miss_;

  // Replay.
  preload::ClockMap* clock_map_ = nullptr;
  size_t clock_map_size_ = 0;
  std::map<std::string, std::deque<const kind::FileRead*>> file_reads_;
  std::vector<const Record*> recorded_spawns_;  // in tape order
  size_t spawns_served_ = 0;
  // Replay: paths whose bytes the replay wrote itself (the view's answer is then its own).
  std::set<std::string> written_;
  // Replay: each recorded subprocess's changes to the workspace (file records by_subprocess).
  std::map<const kind::ProcessSpawn*, std::vector<const RecordKind*>> subprocess_changes_;
  // Record: the workspace watched for what subprocesses change.
  WorkspaceWatch watch_;
  std::string watch_warning_;
};

// PROGRAM's path as the kernel will find it (a PATH search for a bare name).
std::optional<fs::path> locate(const std::string& program) {
  if (program.find('/') != std::string::npos) return fs::path(program);
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0 && is_regular(candidate)) return candidate;
  }
  return std::nullopt;
}

std::vector<std::string> program_environment(const RunOptions& options, const Server& server,
                                             const std::string& mode, uint16_t proxy_port,
                                             const std::string& allowed) {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text(*entry);
    const size_t equals = text.find('=');
    if (equals != std::string::npos) env[text.substr(0, equals)] = text.substr(equals + 1);
  }
  const std::string preload = fs::absolute(options.preload_library).string();
  env["LD_PRELOAD"] = env.contains("LD_PRELOAD") && !env["LD_PRELOAD"].empty()
                          ? preload + ":" + env["LD_PRELOAD"]
                          : preload;
  env["TAPEDECK_MODE"] = mode;
  env["TAPEDECK_SOCKET"] = server.socket_path();
  env["TAPEDECK_WORKSPACE"] = server.workspace();
  env["TAPEDECK_EXEC"] = fs::absolute(options.exec_shim).string();
  env["TAPEDECK_SUPERVISOR_PID"] = std::to_string(::getpid());
  env["TAPEDECK_ALLOW"] = allowed;
  if (options.mode == RunOptions::Mode::replay) env["TAPEDECK_CLOCK_MAP"] = server.clock_map_path();
  if (proxy_port != 0) {
    const std::string proxy = "http://127.0.0.1:" + std::to_string(proxy_port);
    env["TAPEDECK_PROXY_PORT"] = std::to_string(proxy_port);
    env["TAPEDECK_LLM_URL"] = proxy;
    env["OPENAI_BASE_URL"] = proxy + "/v1";
    env["ANTHROPIC_BASE_URL"] = proxy;
    if (!options.llm_upstream.empty()) {
      env["TAPEDECK_UPSTREAM_OPENAI_BASE_URL"] = options.llm_upstream + "/v1";
      env["TAPEDECK_UPSTREAM_ANTHROPIC_BASE_URL"] = options.llm_upstream;
    }
  }
  // Bytecode caches are the interpreter's, not the program's: they must not become file writes.
  env["PYTHONDONTWRITEBYTECODE"] = "1";
  std::vector<std::string> out;
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

std::atomic<pid_t> forward_to{0};

void forward_signal(int signal_number) {
  const pid_t pid = forward_to.load();
  if (pid > 0) ::kill(pid, signal_number);
}

// Starts the root program: as it is when recording, in a private view of the workspace when
// replaying (see workspace_view.hpp). Returns posix_spawn's error (0 when started).
int start_program(const RunOptions& options, WorkspaceView& view, const fs::path& program,
                  std::vector<char*>& argv, std::vector<char*>& envp,
                  const std::vector<std::string>& env, pid_t& pid, RunOutcome& outcome) {
  const fs::path cwd = fs::current_path();
  if (options.mode == RunOptions::Mode::replay && options.isolation != Isolation::copy) {
    std::string why;
    if (auto started = view.start_in_overlay(program.c_str(), argv.data(), envp.data(), cwd, why)) {
      pid = *started;
      return 0;
    }
    if (options.isolation == Isolation::kernel_overlay) {
      throw std::runtime_error(
          "--isolation namespace: the kernel refused a private view of the "
          "workspace (" +
          why + ")");
    }
    outcome.warnings.push_back("no mount namespace for the replay (" + why +
                               "): replaying in a copy of the workspace instead; programs the "
                               "preload library does not reach see the real workspace");
  }
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  std::vector<std::string> copy_env;
  std::vector<char*> copy_envp;
  char* const* environment = envp.data();
  fs::path start_in;
  if (options.mode == RunOptions::Mode::replay) {
    view.make_copy();
    start_in = view.translate(cwd);
    ::posix_spawn_file_actions_addchdir_np(&actions, start_in.c_str());
    copy_env = env;
    copy_env.push_back("TAPEDECK_VIEW=" + view.copy_root().string());
    for (std::string& entry : copy_env) {
      if (entry.starts_with("PWD=")) entry = "PWD=" + start_in.string();
    }
    for (std::string& entry : copy_env) copy_envp.push_back(entry.data());
    copy_envp.push_back(nullptr);
    environment = copy_envp.data();
  }
  const int spawned =
      ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environment);
  ::posix_spawn_file_actions_destroy(&actions);
  return spawned;
}

}  // namespace

std::optional<std::string> interposition_warning(const fs::path& program) {
  const std::optional<std::string> bytes = detail::read_file(program);
  if (!bytes) return std::nullopt;
  const std::string& image = *bytes;
  if (image.starts_with("#!")) {
    // A script: what matters is its interpreter.
    std::istringstream words(image.substr(2, image.find('\n') - 2));
    std::string interpreter;
    words >> interpreter;
    if (interpreter.empty() || fs::path(interpreter) == program) return std::nullopt;
    return interposition_warning(interpreter);
  }
  if (image.size() < sizeof(Elf64_Ehdr) || image.compare(0, 4, ELFMAG) != 0 ||
      image[EI_CLASS] != ELFCLASS64) {
    return std::nullopt;
  }
  Elf64_Ehdr header;
  std::memcpy(&header, image.data(), sizeof header);
  bool has_interpreter = false;
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    const uint64_t at = header.e_phoff + uint64_t{i} * header.e_phentsize;
    if (at + sizeof(Elf64_Phdr) > image.size()) break;
    Elf64_Phdr segment;
    std::memcpy(&segment, image.data() + at, sizeof segment);
    if (segment.p_type == PT_INTERP) has_interpreter = true;
  }
  if (image.find("Go build ID:") != std::string::npos) {
    return program.string() +
           " is a Go program: it reads the clock through the vDSO and makes system calls "
           "itself, so its clock reads, sleeps, file effects and execs are not taped; only its "
           "LLM calls through the proxy are";
  }
  if (!has_interpreter) {
    return program.string() +
           " is statically linked: there is no libc to interpose, so its clock reads, sleeps, "
           "file effects, execs and connects are not taped; only its LLM calls through the "
           "proxy are";
  }
  return std::nullopt;
}

RunOutcome run(const RunOptions& options) {
  if (options.command.empty()) throw std::runtime_error("no program to run (after --)");
  const auto started = std::chrono::steady_clock::now();
  RunOutcome outcome;
  const auto program = locate(options.command[0]);
  if (!program) throw std::runtime_error(options.command[0] + ": program not found");
  if (auto warning = interposition_warning(*program)) outcome.warnings.push_back(*warning);
  for (const fs::path& needed : {options.preload_library, options.exec_shim}) {
    if (!fs::exists(needed))
      throw std::runtime_error(needed.string() + ": missing (a broken install?)");
  }
  if (!fs::is_directory(options.workspace)) {
    throw std::runtime_error("--workspace " + options.workspace.string() + ": not a folder");
  }

  RunDir run_dir(fs::weakly_canonical(options.workspace));
  std::unique_ptr<Session> session;
  StreamOptions stream;
  stream.fsync = options.fsync;
  LlmOptions llm;
  llm.timeout = std::chrono::minutes(10);
  std::string mode = "off";
  if (options.mode == RunOptions::Mode::record) {
    mode = "record";
    NetworkPolicy network = NetworkPolicy::deny_all();
    if (!options.llm_upstream.empty()) {
      try {
        network.allow(NetworkPolicy::rule_for(options.llm_upstream));
      } catch (const NetworkDenied&) {
        throw std::runtime_error("--llm-upstream " + options.llm_upstream +
                                 ": not a URL (scheme://host[:port])");
      }
    }
    session = Testbench::recording(options.tape)
                  .llm(llm)
                  .subprocesses()
                  .network(network)
                  .describe(options.command[0], options.command)
                  .stream(stream)
                  .start();
  } else if (options.mode == RunOptions::Mode::replay) {
    mode = "replay";
    auto bench = Testbench::replaying(options.tape, options.emit).llm(llm).subprocesses();
    if (options.emit) bench.stream(stream);
    session = bench.start();
  }

  if (session) {
    // The program's credentials never reach the tape, whatever output carries them.
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string_view text(*entry);
      const size_t equals = text.find('=');
      const std::string_view name = text.substr(0, equals);
      for (std::string_view marker : {"API_KEY", "TOKEN", "SECRET", "PASSWORD", "ACCESS_KEY"}) {
        if (equals != std::string_view::npos && name.find(marker) != std::string_view::npos) {
          session->recorder().add_secret(std::string(text.substr(equals + 1)));
        }
      }
    }
  }
  WorkspaceView view(fs::weakly_canonical(options.workspace), run_dir.path() / "view");
  Server server(options, session.get(), run_dir.path(), view);
  std::unique_ptr<LlmProxy> proxy;
  if (session) {
    const std::string upstream = options.llm_upstream.empty()
                                     ? "http://no-llm-upstream-given.invalid"
                                     : options.llm_upstream;
    LlmProxy::Hooks hooks;
    hooks.on_replay_miss = [&server](const std::string& message) {
      server.stop_tree("the program called the LLM with a request the tape does not hold: " +
                       message);
    };
    hooks.on_call_served = [&server] { server.llm_call_served(); };
    proxy = std::make_unique<LlmProxy>(*session, upstream, std::move(hooks));
  }
  const std::vector<std::string> env = program_environment(
      options, server, mode, proxy ? proxy->port() : 0, resolve_allowed(options.allow));

  std::vector<char*> argv;
  for (const std::string& arg : options.command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  std::atomic<bool> root_exited{false};
  std::thread serving([&] { server.serve(root_exited, std::chrono::milliseconds(2000)); });
  // Like system(): the terminal's ^C is the program's to handle; SIGTERM is passed on.
  struct sigaction ignore {
  }, previous_int{}, previous_quit{}, forward{}, previous_term{};
  ignore.sa_handler = SIG_IGN;
  forward.sa_handler = forward_signal;
  ::sigaction(SIGINT, &ignore, &previous_int);
  ::sigaction(SIGQUIT, &ignore, &previous_quit);
  ::sigaction(SIGTERM, &forward, &previous_term);
  pid_t pid = 0;
  int spawned = 0;
  try {
    spawned = start_program(options, view, *program, argv, envp, env, pid, outcome);
  } catch (...) {
    root_exited = true;
    serving.join();
    if (proxy) proxy->stop();
    throw;
  }
  int status = 0;
  if (spawned == 0) {
    forward_to = pid;
    server.set_root(pid);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    forward_to = 0;
  }
  root_exited = true;
  serving.join();
  ::sigaction(SIGINT, &previous_int, nullptr);
  ::sigaction(SIGQUIT, &previous_quit, nullptr);
  ::sigaction(SIGTERM, &previous_term, nullptr);
  if (proxy) proxy->stop();
  if (spawned != 0) {
    throw std::runtime_error("cannot run " + options.command[0] + ": " + std::strerror(spawned));
  }
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  outcome.miss = server.miss();
  if (options.mode == RunOptions::Mode::replay) {
    std::tie(outcome.unused_inputs, outcome.unused_example) = server.unused_inputs();
    outcome.isolation = view.kind();
    outcome.isolation_setup_ms = view.setup_ms();
  }
  if (!server.watch_warning().empty()) outcome.warnings.push_back(server.watch_warning());
  if (server.withheld() > 0) {
    outcome.warnings.push_back(std::to_string(server.withheld()) +
                               " file read(s) or write(s) held a credential the program was given: "
                               "the tape keeps their hash, not their bytes (a replay reads them "
                               "from the workspace when they are unchanged)");
  }
  if (session) {
    outcome.records = session->recorder().record_count();
    session->finish();
  }
  outcome.wall = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  return outcome;
}

}  // namespace tapedeck::supervisor
