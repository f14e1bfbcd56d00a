#include <unistd.h>

#include <cerrno>
#include <optional>
#include <unordered_set>

#include "tape/atomic_file.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"

namespace tapedeck {

namespace {

constexpr size_t kFlushBytes = 1 << 20;

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
  std::optional<std::unordered_set<std::string>> in_sidecar;
  std::unordered_set<std::string> handled;  // each name once
  auto carry = [&](const std::string& name, Reference reference, FormatReport& report) {
    const bool required = reference == Reference::payload;
    if (!in_sidecar) {
      in_sidecar.emplace();
      std::error_code listing;
      for (std::filesystem::directory_iterator it(from_cas, listing), end; !listing && it != end;
           it.increment(listing)) {
        in_sidecar->insert(it->path().filename().string());
      }
    }
    // Most names are of file reads the sidecar does not keep: those cost one lookup, or none.
    if (in_sidecar->empty() || !in_sidecar->contains(name)) {
      if (required && handled.insert(name).second) {
        (is_valid_cas_name(name) ? report.cas_missing : report.cas_invalid_names).push_back(name);
      }
      return;
    }
    if (!handled.insert(name).second) return;
    if (!is_valid_cas_name(name)) {
      if (required) report.cas_invalid_names.push_back(name);
      return;
    }
    if (same_sidecar) {
      ++report.cas_already_present;
      return;
    }
    switch (cas::carry_entry(from_cas, to_cas, name)) {
      case cas::Carried::linked:
        ++report.cas_linked;
        break;
      case cas::Carried::copied:
        ++report.cas_copied;
        break;
      case cas::Carried::already_present:
        ++report.cas_already_present;
        break;
    }
  };

  // The input is opened (and its header checked) before the output exists, so an unreadable
  // input leaves nothing behind.
  auto reader = TapeReader::open(in, ReaderOptions{.canonical_lines = true});
  detail::AtomicFile file(out);
  FormatReport report = stream_canonical(
      *reader, [&](std::string_view bytes) { file.write(bytes); }, carry);
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
