#include "tapedeck/pack.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "tape/atomic_file.hpp"
#include "tape/compressed_tape.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/secrets.hpp"

namespace tapedeck::pack {

namespace {

namespace fs = std::filesystem;

constexpr size_t kChunk = 1 << 16;

struct ArchiveReader {
  archive* handle = archive_read_new();
  ~ArchiveReader() { archive_read_free(handle); }
};
struct ArchiveWriter {
  archive* handle = archive_write_new();
  ~ArchiveWriter() { archive_write_free(handle); }
};
struct Entry {
  archive_entry* handle = archive_entry_new();
  ~Entry() { archive_entry_free(handle); }
};

// Opens `pack` for reading as a zstd-compressed tar (nothing else is a pack).
void open_archive(ArchiveReader& reader, const fs::path& pack) {
  archive_read_support_filter_zstd(reader.handle);
  archive_read_support_format_tar(reader.handle);
  if (archive_read_open_filename(reader.handle, pack.c_str(), kChunk) != ARCHIVE_OK) {
    throw TapeError(pack.string(), 0,
                    std::string("not a packed tape: ") + archive_error_string(reader.handle));
  }
}

// A tape's name in a pack: NAME.tape, whatever the name it was packed from (NAME.tape.zst,
// NAME.tdk) was.
std::string packed_name(const fs::path& tape) {
  std::string name = tape.filename().string();
  for (const char* suffix : {".zst", ".tdk"}) {
    if (name.ends_with(suffix)) name.resize(name.size() - std::strlen(suffix));
  }
  if (!name.ends_with(".tape")) name += ".tape";
  return name;
}

// What a member of a pack may be, by its name alone.
enum class Member { tape, manifest, entry, sidecar_folder, refused };
Member classify(std::string_view name, std::string& tape_name) {
  auto acceptable_tape = [](std::string_view tape) {
    return tape.size() > 5 && tape.size() < 200 && tape.ends_with(".tape") && tape.front() != '.' &&
           tape.find('/') == std::string_view::npos && tape.find('\0') == std::string_view::npos;
  };
  std::string_view tape = name;
  Member kind = Member::tape;
  if (const size_t slash = name.find('/'); slash != std::string_view::npos) {
    std::string_view folder = name.substr(0, slash);
    std::string_view rest = name.substr(slash + 1);
    if (!folder.ends_with(".tape.cas")) return Member::refused;
    tape = folder.substr(0, folder.size() - 4);
    if (rest.empty()) {
      kind = Member::sidecar_folder;
    } else if (is_valid_cas_name(rest)) {
      kind = Member::entry;
    } else {
      return Member::refused;
    }
  } else if (name.ends_with(".tape.manifest")) {
    tape = name.substr(0, name.size() - std::strlen(".manifest"));
    kind = Member::manifest;
  } else if (name.ends_with(".tape.cas")) {
    tape = name.substr(0, name.size() - 4);
    kind = Member::sidecar_folder;
  }
  if (!acceptable_tape(tape)) return Member::refused;
  if (tape_name.empty()) tape_name = tape;
  return tape == tape_name ? kind : Member::refused;
}

// Writes the member the reader is at into `path`, which must not exist yet.
void extract_member(archive* reader, const fs::path& pack, const std::string& member,
                    const fs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw TapeError(
        pack.string(), 0,
        "member " + member +
            (errno == EEXIST ? " appears twice"
                             : std::string(": cannot unpack: ") + std::strerror(errno)));
  }
  std::vector<char> buffer(kChunk);
  for (;;) {
    const la_ssize_t got = archive_read_data(reader, buffer.data(), buffer.size());
    if (got == 0) break;
    if (got < 0) {
      ::close(fd);
      throw TapeError(pack.string(), 0,
                      "member " + member + " cannot be read: " + archive_error_string(reader));
    }
    const char* at = buffer.data();
    size_t left = static_cast<size_t>(got);
    while (left > 0) {
      const ssize_t wrote = ::write(fd, at, left);
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) {
        ::close(fd);
        detail::throw_errno(path, "cannot unpack");
      }
      at += wrote;
      left -= static_cast<size_t>(wrote);
    }
  }
  ::close(fd);
}

// Unpacks every member into `dir`; returns the tape's name there.
std::string extract_all(const fs::path& pack, const fs::path& dir) {
  ArchiveReader reader;
  open_archive(reader, pack);
  std::string tape_name;
  bool tape_seen = false;
  archive_entry* entry = nullptr;
  for (;;) {
    const int status = archive_read_next_header(reader.handle, &entry);
    if (status == ARCHIVE_EOF) break;
    if (status != ARCHIVE_OK) {
      throw TapeError(pack.string(), 0,
                      std::string("not a readable pack: ") + archive_error_string(reader.handle));
    }
    const char* raw_name = archive_entry_pathname(entry);
    const std::string member = raw_name != nullptr ? raw_name : "";
    const Member kind = classify(member, tape_name);
    const bool regular = archive_entry_filetype(entry) == AE_IFREG;
    if (kind == Member::refused || (kind == Member::sidecar_folder) == regular) {
      throw TapeError(pack.string(), 0,
                      "refused member " + json_string(member.substr(0, 200)) +
                          ": a pack holds NAME.tape, NAME.tape.manifest and NAME.tape.cas/<hash> "
                          "files, nothing else");
    }
    if (kind == Member::sidecar_folder) continue;
    const fs::path sidecar = dir / (tape_name + ".cas");
    if (kind == Member::entry) {
      std::error_code ignored;
      fs::create_directory(sidecar, ignored);
      extract_member(reader.handle, pack, member, sidecar / member.substr(member.find('/') + 1));
    } else {
      tape_seen = tape_seen || kind == Member::tape;
      extract_member(reader.handle, pack, member, dir / member);
    }
  }
  if (!tape_seen) throw TapeError(pack.string(), 0, "a pack without a tape (no NAME.tape member)");
  return tape_name;
}

// The packs this process unpacked for reading, removed when it ends (by the process that made
// them: a forked child that exits must not take its parent's away).
class Views {
 public:
  ~Views() {
    if (::getpid() != owner_) return;
    std::error_code ignored;
    for (const auto& [path, view] : views_) fs::remove_all(view.folder, ignored);
  }

  const ReadView& get(const fs::path& pack) {
    std::lock_guard lock(mutex_);
    struct stat info {};
    if (::stat(pack.c_str(), &info) != 0) detail::throw_errno(pack, "cannot read the pack");
    const std::string key = fs::absolute(pack).lexically_normal().string();
    auto found = views_.find(key);
    if (found != views_.end() && found->second.size == info.st_size &&
        found->second.mtime_ns == mtime_ns(info)) {
      return found->second.view;
    }
    Unpacked unpacked;
    if (views_.empty()) remove_orphans();
    std::string pattern =
        (fs::temp_directory_path() / ("tapedeck-pack-" + std::to_string(::getpid()) + "-XXXXXX"))
            .string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      detail::throw_errno(pattern, "cannot make a folder to read the pack in");
    }
    unpacked.folder = pattern;
    unpacked.size = info.st_size;
    unpacked.mtime_ns = mtime_ns(info);
    try {
      const std::string name = extract_all(pack, unpacked.folder);
      unpacked.view = ReadView{unpacked.folder / name, unpacked.folder / (name + ".cas"),
                               unpacked.folder / (name + ".manifest")};
    } catch (...) {
      std::error_code ignored;
      fs::remove_all(unpacked.folder, ignored);
      throw;
    }
    if (found != views_.end()) {
      std::error_code ignored;
      fs::remove_all(found->second.folder, ignored);
      views_.erase(found);
    }
    return views_.emplace(key, std::move(unpacked)).first->second.view;
  }

 private:
  struct Unpacked {
    fs::path folder;
    ReadView view;
    off_t size = 0;
    int64_t mtime_ns = 0;
  };
  // The folders of processes that ended without removing theirs (killed): a replay that `check`
  // timed out, say. Named by their process, whose id is then gone.
  static void remove_orphans() {
    std::error_code error;
    for (fs::directory_iterator it(fs::temp_directory_path(error), error), end; !error && it != end;
         it.increment(error)) {
      const std::string name = it->path().filename().string();
      if (!name.starts_with("tapedeck-pack-")) continue;
      const std::string owner = name.substr(14, name.find('-', 14) - 14);
      if (owner.empty() || owner.find_first_not_of("0123456789") != std::string::npos) continue;
      if (::kill(static_cast<pid_t>(std::stol(owner)), 0) == 0 || errno == EPERM) continue;
      std::error_code ignored;
      fs::remove_all(it->path(), ignored);
    }
  }

  static int64_t mtime_ns(const struct stat& info) {
    return static_cast<int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
  }

  std::mutex mutex_;
  std::map<std::string, Unpacked> views_;
  pid_t owner_ = ::getpid();
};

Views& views() {
  static Views all;
  return all;
}

// Adds one member to the archive being written: fixed times and owners, so a tape packs the same.
void add_member(archive* writer, const fs::path& out, const std::string& name, uint64_t size,
                const std::function<size_t(char*, size_t)>& read) {
  Entry entry;
  archive_entry_set_pathname(entry.handle, name.c_str());
  archive_entry_set_size(entry.handle, static_cast<la_int64_t>(size));
  archive_entry_set_filetype(entry.handle, AE_IFREG);
  archive_entry_set_perm(entry.handle, 0644);
  archive_entry_set_mtime(entry.handle, 0, 0);
  if (archive_write_header(writer, entry.handle) != ARCHIVE_OK) {
    throw TapeError(out.string(), 0,
                    "cannot pack " + name + ": " + std::string(archive_error_string(writer)));
  }
  std::vector<char> buffer(kChunk);
  uint64_t left = size;
  while (left > 0) {
    const size_t got = read(buffer.data(), static_cast<size_t>(std::min<uint64_t>(left, kChunk)));
    if (got == 0) throw TapeError(out.string(), 0, "cannot pack " + name + ": it got shorter");
    if (archive_write_data(writer, buffer.data(), got) < 0) {
      throw TapeError(out.string(), 0,
                      "cannot pack " + name + ": " + std::string(archive_error_string(writer)));
    }
    left -= got;
  }
}

struct Named {
  Reference reference;
  uint64_t seq;
  uint64_t line;
  std::optional<uint64_t> len;
  std::string what;
};

}  // namespace

bool is_packed_tape(const fs::path& path) {
  if (!detail::is_compressed_tape(path)) return false;  // every pack is zstd-compressed
  ArchiveReader reader;
  archive_read_support_filter_zstd(reader.handle);
  archive_read_support_format_tar(reader.handle);
  if (archive_read_open_filename(reader.handle, path.c_str(), kChunk) != ARCHIVE_OK) return false;
  archive_entry* entry = nullptr;
  return archive_read_next_header(reader.handle, &entry) == ARCHIVE_OK;
}

const ReadView& read_view(const fs::path& pack) {
  return views().get(pack);
}

PackReport pack_tape(const fs::path& tape, const fs::path& out,
                     const std::optional<std::string>& manifest_json) {
  PackReport report;
  auto refuse_credential = [&](const std::string& where) {
    throw TapeError(tape.string(), 0,
                    where +
                        " holds a credential: a pack never holds one unredacted (`tapedeck scan "
                        "--redact " +
                        tape.string() + "` first)");
  };
  // The canonical tape, into an anonymous file (a tar member's size comes before its bytes).
  std::string pattern = (fs::temp_directory_path() / "tapedeck-pack-tape-XXXXXX").string();
  const int canonical = ::mkstemp(pattern.data());
  if (canonical < 0) detail::throw_errno(pattern, "cannot make a scratch file");
  ::unlink(pattern.c_str());
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{canonical};
  std::map<std::string, Named> named;
  std::vector<Reference> kept;
  {
    auto reader = TapeReader::open(tape, ReaderOptions{.canonical_lines = true});
    LineBuffer buffer;
    buffer.append_header(reader->header());
    auto flush = [&] {
      if (!secrets::find(buffer.view()).empty()) refuse_credential("the tape");
      const std::string_view bytes = buffer.view();
      if (::write(canonical, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
        detail::throw_errno(pattern, "cannot write a scratch file");
      }
      report.tape_bytes += bytes.size();
      buffer.clear();
    };
    while (const Record* record = reader->read()) {
      ++report.records;
      if (const auto* unknown = std::get_if<kind::Unknown>(&record->kind);
          report.records == 1 && unknown != nullptr) {
        kept = extension::entropy_keeps(*unknown);
      }
      buffer.put(reader->canonical_line());
      for_each_reference(record->kind, [&](const std::string& name, std::optional<uint64_t> len,
                                           Reference reference) {
        std::string what(kind_name(record->kind));
        if (const auto* read = std::get_if<kind::FileRead>(&record->kind)) {
          what += " " + json_string(read->path);
        } else if (const auto* write = std::get_if<kind::FileWrite>(&record->kind)) {
          what += " " + json_string(write->path);
        }
        named.try_emplace(name, Named{reference, record->seq, reader->line_number(), len, what});
      });
      if (buffer.size() >= (1 << 20)) flush();
    }
    flush();
  }
  if (manifest_json && !secrets::find(*manifest_json).empty()) refuse_credential("the manifest");

  // The entries to pack: every one the records name that the sidecar holds; one that a replay
  // needs and the sidecar lacks stops the pack.
  const fs::path sidecar = cas_dir_for(tape);
  std::vector<std::string> entries;
  std::vector<const Named*> missing;
  for (const auto& [name, why] : named) {
    const bool needed = why.reference == Reference::payload ||
                        (std::find(kept.begin(), kept.end(), why.reference) != kept.end() &&
                         why.len.value_or(1) > 0);
    std::error_code ignored;
    if (is_valid_cas_name(name) && fs::is_regular_file(sidecar / name, ignored)) {
      entries.push_back(name);
    } else if (needed) {
      missing.push_back(&why);
    }
  }
  if (!missing.empty()) {
    // The first in tape order is named.
    const Named& first =
        **std::min_element(missing.begin(), missing.end(),
                           [](const Named* a, const Named* b) { return a->line < b->line; });
    throw TapeError(
        tape.string(), first.line,
        "seq " + std::to_string(first.seq) + ": the " + std::string(to_string(first.reference)) +
            " of " + first.what + " are missing from the sidecar" +
            (missing.size() > 1 ? " (and " + std::to_string(missing.size() - 1) + " more entries)"
                                : std::string()) +
            ": the pack would not replay (`tapedeck verify` names each)");
  }

  const std::string tape_name = packed_name(out);
  detail::AtomicFile file(out);
  {
    ArchiveWriter writer;
    archive_write_set_format_pax_restricted(writer.handle);
    archive_write_add_filter_zstd(writer.handle);
    if (archive_write_open_fd(writer.handle, file.fd()) != ARCHIVE_OK) {
      throw TapeError(out.string(), 0,
                      std::string("cannot write: ") + archive_error_string(writer.handle));
    }
    ::lseek(canonical, 0, SEEK_SET);
    add_member(writer.handle, out, tape_name, report.tape_bytes, [&](char* dst, size_t room) {
      const ssize_t got = ::read(canonical, dst, room);
      return got > 0 ? static_cast<size_t>(got) : 0;
    });
    if (manifest_json) {
      size_t at = 0;
      add_member(writer.handle, out, tape_name + ".manifest", manifest_json->size(),
                 [&](char* dst, size_t room) {
                   const size_t n = std::min(room, manifest_json->size() - at);
                   std::memcpy(dst, manifest_json->data() + at, n);
                   at += n;
                   return n;
                 });
    }
    for (const std::string& name : entries) {
      const std::string bytes = cas::read_entry(sidecar, name);  // checked against its name
      if (!secrets::find(bytes).empty()) refuse_credential("sidecar entry " + name.substr(0, 12));
      size_t at = 0;
      add_member(writer.handle, out, tape_name + ".cas/" + name, bytes.size(),
                 [&](char* dst, size_t room) {
                   const size_t n = std::min(room, bytes.size() - at);
                   std::memcpy(dst, bytes.data() + at, n);
                   at += n;
                   return n;
                 });
      ++report.entries;
      report.entry_bytes += bytes.size();
    }
    if (archive_write_close(writer.handle) != ARCHIVE_OK) {
      throw TapeError(out.string(), 0,
                      std::string("cannot write: ") + archive_error_string(writer.handle));
    }
  }
  file.commit();
  return report;
}

fs::path unpack(const fs::path& pack, const fs::path& dir, bool overwrite) {
  detail::make_directories(dir);
  std::string pattern = (dir / ".tapedeck-unpack-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) detail::throw_errno(dir, "cannot unpack into");
  const fs::path scratch = pattern;
  std::error_code ignored;
  try {
    const std::string name = extract_all(pack, scratch);
    const fs::path target = dir / name;
    if (fs::exists(target, ignored) && !overwrite) {
      throw TapeError(target.string(), 0,
                      "a tape is already there (unpack elsewhere with -o, or --overwrite)");
    }
    for (const std::string& member : {name + ".cas", name + ".manifest", name}) {
      if (!fs::exists(scratch / member, ignored)) continue;
      fs::remove_all(dir / member, ignored);
      fs::rename(scratch / member, dir / member);
    }
    fs::remove_all(scratch, ignored);
    return target;
  } catch (...) {
    fs::remove_all(scratch, ignored);
    throw;
  }
}

}  // namespace tapedeck::pack
