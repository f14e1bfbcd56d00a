#include <unistd.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tape/atomic_file.hpp"
#include "tape/compressed_tape.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"

namespace tapedeck {

namespace {

constexpr size_t kFlushBytes = 1 << 20;

// Sidecar names are hex digests: their first 16 characters already spread well, so they are
// hashed by mixing two words instead of hashing all 64 bytes. Other names hash as usual.
struct CasNameHash {
  using is_transparent = void;
  size_t operator()(std::string_view name) const {
    if (name.size() < 16) return std::hash<std::string_view>{}(name);
    uint64_t first, second;
    std::memcpy(&first, name.data(), 8);
    std::memcpy(&second, name.data() + 8, 8);
    return static_cast<size_t>((first * 0x9E3779B97F4A7C15ULL) ^ (second + (first >> 29)));
  }
};

// Streams every line of `in` through the canonical encoder into `sink`, calling
// on_cas(name, reference, report) for every sidecar entry a record names (see Reference), as
// often as it is named.
template <typename Sink, typename OnCas>
FormatReport stream_canonical(TapeReader& reader, Sink&& sink, OnCas&& on_cas) {
  FormatReport report;
  LineBuffer buffer;
  buffer.append_header(reader.header());
  while (const Record* record = reader.read()) {
    ++report.records;
    buffer.put(reader.canonical_line());
    for_each_reference(record->kind, [&](const std::string& name, std::optional<uint64_t>,
                                         Reference reference) { on_cas(name, reference, report); });
    if (buffer.size() >= kFlushBytes) {
      sink(buffer.view());
      buffer.clear();
    }
  }
  sink(buffer.view());
  report.torn_tail = reader.torn_tail();
  return report;
}

// Carries sidecar entries on a thread of its own, so the links (a system call each) overlap the
// reading, encoding and writing of the tape. Names are queued in batches; finish() waits for the
// last one, adds the counts to the report and rethrows the first error.
class BackgroundCarrier {
 public:
  BackgroundCarrier(const std::filesystem::path& from, const std::filesystem::path& to)
      : carrier_(from, to), thread_([this] { run(); }) {}

  ~BackgroundCarrier() { stop(); }

  void carry(const std::string& name) {
    batch_.push_back(name);
    if (batch_.size() >= kBatch) hand_over();
  }

  void finish(FormatReport& report) {
    hand_over();
    stop();
    if (error_) std::rethrow_exception(error_);
    report.cas_linked += counts_[static_cast<size_t>(cas::Carried::linked)];
    report.cas_copied += counts_[static_cast<size_t>(cas::Carried::copied)];
    report.cas_already_present += counts_[static_cast<size_t>(cas::Carried::already_present)];
  }

 private:
  static constexpr size_t kBatch = 256;

  void hand_over() {
    if (batch_.empty()) return;
    {
      std::lock_guard lock(mutex_);
      queued_.insert(queued_.end(), std::make_move_iterator(batch_.begin()),
                     std::make_move_iterator(batch_.end()));
    }
    batch_.clear();
    wake_.notify_one();
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  void run() {
    std::vector<std::string> taken;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queued_.empty(); });
        if (queued_.empty()) return;  // stopping, and everything handed over is carried
        taken.swap(queued_);
      }
      for (const std::string& name : taken) {
        if (error_) break;  // the first error is the one reported; the rest are not tried
        try {
          ++counts_[static_cast<size_t>(carrier_.carry(name))];
        } catch (...) {
          error_ = std::current_exception();
        }
      }
      taken.clear();
    }
  }

  cas::Carrier carrier_;
  std::vector<std::string> batch_;  // the caller's, not yet handed over
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::string> queued_;
  bool stopping_ = false;
  // The carrier thread's own; read by finish() after the join.
  std::exception_ptr error_;
  std::array<uint64_t, 3> counts_{};
  std::thread thread_;  // last: started once every member above exists
};

}  // namespace

FormatReport format_tape(const std::filesystem::path& in, const std::filesystem::path& out) {
  const std::filesystem::path from_cas = cas_dir_for(in);
  const std::filesystem::path to_cas = cas_dir_for(out);
  std::error_code ignored;
  const bool same_sidecar = std::filesystem::equivalent(from_cas, to_cas, ignored) ||
                            from_cas.lexically_normal() == to_cas.lexically_normal();

  // Entries are carried as their records stream past, i.e. before the tape that names them is
  // renamed into place.
  // A payload must be in the sidecar; the other references are carried when they are there (a
  // reference tape names file hashes as digests only). What the sidecar holds is listed once:
  // a tape names far more entries (every file read) than it keeps, and a lookup per name would
  // walk the path in the kernel each time.
  std::optional<std::unordered_map<std::string, bool, CasNameHash, std::equal_to<>>> in_sidecar;
  std::unordered_set<std::string, CasNameHash, std::equal_to<>> reported;  // missing, named once
  std::optional<BackgroundCarrier> carrier;  // started at the first entry to carry
  auto carry = [&](const std::string& name, Reference reference, FormatReport& report) {
    const bool required = reference == Reference::payload;
    if (!in_sidecar) {
      in_sidecar.emplace();
      std::error_code listing;
      for (std::filesystem::directory_iterator it(from_cas, listing), end; !listing && it != end;
           it.increment(listing)) {
        in_sidecar->emplace(it->path().filename().string(), false);
      }
    }
    // Most names are of file reads the sidecar does not keep: those cost one lookup, or none.
    const auto entry = in_sidecar->empty() ? in_sidecar->end() : in_sidecar->find(name);
    if (entry == in_sidecar->end()) {
      if (required && reported.insert(name).second) {
        (is_valid_cas_name(name) ? report.cas_missing : report.cas_invalid_names).push_back(name);
      }
      return;
    }
    if (entry->second) return;  // carried already
    entry->second = true;
    if (!is_valid_cas_name(name)) {
      if (required) report.cas_invalid_names.push_back(name);
      return;
    }
    if (same_sidecar) {
      ++report.cas_already_present;
      return;
    }
    if (!carrier) carrier.emplace(from_cas, to_cas);
    carrier->carry(name);
  };

  // The input is opened (and its header checked) before the output exists, so an unreadable
  // input leaves nothing behind.
  auto reader = TapeReader::open(in, ReaderOptions{.canonical_lines = true});
  detail::TapeOutput file(out);  // compressed when out's name ends in .zst
  FormatReport report = stream_canonical(
      *reader, [&](std::string_view bytes) { file.write(bytes); }, carry);
  if (carrier) carrier->finish(report);
  if (report.cas_linked + report.cas_copied > 0) detail::fsync_directory(to_cas);
  file.commit();
  return report;
}

FormatReport format_tape_to_fd(const std::filesystem::path& in, int fd) {
  auto write_all = [&](std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t wrote = ::write(fd, bytes.data(), bytes.size());
      if (wrote < 0) {
        if (errno == EINTR) continue;
        detail::throw_errno("<output>", "write failed");
      }
      bytes.remove_prefix(static_cast<size_t>(wrote));
    }
  };
  auto reader = TapeReader::open(in, ReaderOptions{.canonical_lines = true});
  return stream_canonical(*reader, write_all, [](const std::string&, Reference, FormatReport&) {});
}

}  // namespace tapedeck
