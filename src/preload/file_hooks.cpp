// Files under the workspace: opens (a read, or a write reported when the descriptor closes),
// deletes and renames, and the temporary files libc makes. Both modes make the real call and
// report it; replay first lets the supervisor put a recorded file's bytes in the view.
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

// Descriptors open for writing in the workspace: their file is reported when they close.
constinit FdSet written_fds;

void track_written(int fd) {
  written_fds.add(fd);
}

// Clears the mark; true when it was set.
bool untrack_written(int fd) {
  return written_fds.remove(fd);
}

bool opens_for_writing(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0;
}

namespace {

// The files this process has announced as about to change (hashes of their paths): the first
// change of each is what the supervisor tapes the file as found for, so a process tells it once.
// (A fork's child keeps the parent's: the supervisor knows those already. Full, or with threads
// racing, the process tells one again, which the supervisor knows too.)
constexpr size_t kAnnouncedFiles = 128;
uint64_t announced_files[kAnnouncedFiles];
size_t announced_count = 0;

uint64_t path_hash(const char* path) {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (const char* c = path; *c != '\0'; ++c) {
    hash = (hash ^ static_cast<unsigned char>(*c)) * 1099511628211ull;
  }
  return hash;
}

// `absolute` (lexically normal, as the program names it) is about to change: one of the
// workspace, or of the home folder outside it, is announced the first time (Op::about_to_change).
// `made`: the process has just made it, where there was nothing (mkstemp).
void announce_change(const char* absolute, bool made = false) {
  if (!in_workspace(absolute) &&
      (config.home_len == 0 || !under(absolute, config.home, config.home_len) ||
       absolute[config.home_len] != '/')) {
    return;
  }
  const uint64_t hash = path_hash(absolute);
  for (size_t i = 0; i < announced_count; ++i) {
    if (announced_files[i] == hash) return;
  }
  if (announced_count < kAnnouncedFiles) announced_files[announced_count++] = hash;
  // A write of it closed and not yet reported goes first: then the run has a record of it.
  if (write_pending(absolute)) sync_with_supervisor();
  char buffer[kPathMax + 64];
  FixedSink frame{buffer, sizeof buffer};
  tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::about_to_change));
  tapedeck::wire::put_bytes(frame, absolute);
  tapedeck::wire::put_int(frame, static_cast<uint8_t>(made ? 1 : 0));
  tapedeck::wire::put_int(frame, file_report_thread());
  Answer answer;
  ask(frame, answer);
}

// announce_change for a path outside the workspace as the program gives it, inside a hook.
void announce_change_at(int dirfd, const char* path) {
  if (config.home_len == 0) return;  // (then only the workspace's are announced)
  char absolute[kPathMax];
  if (path != nullptr && absolute_path(dirfd, path, absolute)) {
    from_view(absolute);
    announce_change(absolute);
  }
}

}  // namespace

void before_change(int dirfd, const char* path) {
  if (!recording_or_replaying()) return;
  HookScope scope;
  char absolute[kPathMax];
  if (path != nullptr && absolute_path(dirfd, path, absolute)) {
    from_view(absolute);
    announce_change(absolute);
  }
}

// Every open under the workspace, whatever the entry point (open, openat, fopen, creat, …).
// `open_real(path)` performs the real open. Both modes open the path itself (the kernel answers:
// in replay, on the replay's private view of the workspace); an open that sees a file's bytes as
// they were (neither a file it creates with O_EXCL nor one it truncates) is a read. Record tapes
// it once the open succeeded; replay first lets the supervisor put the recorded bytes in place.
template <typename OpenReal>
int taped_open(int dirfd, const char* path, int flags, OpenReal&& open_real) {
  const InView real_path(path);
  if (!recording_or_replaying() || (flags & (O_DIRECTORY | O_PATH)) != 0) {
    return open_real(real_path);
  }
  HookScope scope;
  char absolute[kPathMax];
  const bool writing = opens_for_writing(flags);
  if (!workspace_path(dirfd, path, absolute)) {
    if (writing) announce_change_at(dirfd, path);
    return open_real(real_path);
  }
  if (writing) announce_change(absolute);
  const bool exclusive = (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL);
  const bool reads = !exclusive && (flags & O_TRUNC) == 0 && (flags & O_ACCMODE) != O_WRONLY;

  // A file written and closed before is reported before it is written again, in both modes.
  if (writing && write_pending(absolute)) sync_with_supervisor();

  char buffer[kPathMax + 64];
  FixedSink frame{buffer, sizeof buffer};
  Answer answer;
  if (config.mode == Mode::replay) {
    tapedeck::wire::begin_frame(frame,
                                static_cast<uint8_t>(writing ? Op::open_write : Op::open_read));
    tapedeck::wire::put_bytes(frame, absolute);
    if (writing) tapedeck::wire::put_int(frame, static_cast<uint8_t>(reads ? 2 : 0));
    tapedeck::wire::put_int(frame, file_report_thread());
    // Reported writes settle where the recording's did: at a read of a file that is there.
    struct stat before;
    const bool settle = reads &&
                        ensure(real.fstatat, "fstatat")(dirfd, real_path, &before, 0) == 0 &&
                        S_ISREG(before.st_mode);
    if ((reads || writing) && ask(frame, answer, settle)) {
      if (answer.reply == Reply::miss) stop_on_miss();
      if (answer.reply == Reply::fail) {  // a fault the replay injects
        tapedeck::wire::Cursor cursor(std::string_view(answer.body, answer.body_size));
        const auto error = cursor.take_int<int32_t>();
        errno = cursor.ok() ? error : EIO;
        return -1;
      }
    }
    const int fd = open_real(real_path);
    if (fd >= 0 && writing) track_written(fd);
    return fd;
  }

  // Record. A file the open creates has no bytes to read.
  bool existed = true;
  if (reads && (flags & O_CREAT) != 0) {
    struct stat before;
    existed = ensure(real.fstatat, "fstatat")(dirfd, real_path, &before, 0) == 0;
  }
  const int fd = open_real(real_path);
  if (fd < 0) return fd;
  struct stat status;
  if (fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) return fd;
  const int saved = errno;
  if (reads && existed) {
    tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::open_read));
    tapedeck::wire::put_bytes(frame, absolute);
    tapedeck::wire::put_int(frame, file_report_thread());
    ask(frame, answer);
  }
  if (writing) track_written(fd);
  errno = saved;
  return fd;
}

mode_t mode_argument(int flags, va_list args) {
  return (flags & (O_CREAT | O_TMPFILE)) != 0 ? static_cast<mode_t>(va_arg(args, int)) : 0;
}

int open_path(const char* path, int flags, mode_t mode) {
  const int fd = taped_open(AT_FDCWD, path, flags, [&](const char* p) {
    return ensure(real.open, "open")(p, flags, mode);
  });
  note_entropy_fd(fd, path);
  return fd;
}

int openat_path(int dirfd, const char* path, int flags, mode_t mode) {
  const int fd = taped_open(dirfd, path, flags, [&](const char* p) {
    return ensure(real.openat, "openat")(dirfd, p, flags, mode);
  });
  note_entropy_fd(fd, path);
  return fd;
}

int fopen_flags(const char* mode) {
  int flags = 0;
  switch (mode[0]) {
    case 'r':
      flags = O_RDONLY;
      break;
    case 'w':
      flags = O_WRONLY | O_CREAT | O_TRUNC;
      break;
    case 'a':
      flags = O_WRONLY | O_CREAT | O_APPEND;
      break;
    default:
      return -1;
  }
  for (const char* c = mode + 1; *c != '\0' && *c != ','; ++c) {
    if (*c == '+') flags = (flags & ~O_ACCMODE) | O_RDWR;
    if (*c == 'x') flags |= O_EXCL;
    if (*c == 'e') flags |= O_CLOEXEC;
  }
  return flags;
}

FILE* taped_fopen(const char* path, const char* mode) {
  if (FILE* entropy = open_entropy_file(path)) return entropy;
  const int flags = mode != nullptr ? fopen_flags(mode) : -1;
  char absolute[kPathMax];
  if (!recording_or_replaying() || flags < 0)
    return ensure(real.fopen, "fopen")(InView(path), mode);
  if (!workspace_path(AT_FDCWD, path, absolute)) {
    if (opens_for_writing(flags)) before_change(AT_FDCWD, path);
    return ensure(real.fopen, "fopen")(InView(path), mode);
  }
  const int fd = open_path(path, flags, 0666);
  if (fd < 0) return nullptr;
  FILE* stream = fdopen(fd, mode);
  if (stream == nullptr) {
    untrack_written(fd);
    ensure(real.close, "close")(fd);
  }
  return stream;
}

// The closing half of a write: the file's bytes are final once the descriptor is gone.
template <typename CloseReal>
int taped_close(int fd, CloseReal&& close_real) {
  forget_entropy_fd(fd);
  forget_proxy_fd(fd);
  if (is_connection(fd)) return 0;  // ours: a program closing every fd keeps it
  if (config.mode == Mode::off || in_hook || !untrack_written(fd)) return close_real();
  HookScope scope;
  char path[kPathMax];
  const bool named = fd_path(fd, path);
  stamp_written_file(fd);
  const int result = close_real();
  const int saved = errno;
  if (named) note_closed_write(path);
  errno = saved;
  return result;
}

// Tells the supervisor of a change made (a delete: one path; a rename: two) and waits for it to
// be taped.
void report_done(Op op, const char* path, const char* second = nullptr) {
  char buffer[2 * kPathMax + 64];
  FixedSink frame{buffer, sizeof buffer};
  tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(op));
  tapedeck::wire::put_bytes(frame, path);
  if (second != nullptr) tapedeck::wire::put_bytes(frame, second);
  tapedeck::wire::put_int(frame, file_report_thread());
  Answer answer;
  ask(frame, answer);
}

// A delete in the workspace, reported once done (when it removed a file), in both modes.
template <typename DeleteReal>
int taped_delete(int dirfd, const char* path, DeleteReal&& delete_real) {
  const InView real_path(path);
  if (!recording_or_replaying()) return delete_real(real_path);
  HookScope scope;
  char absolute[kPathMax];
  if (!workspace_path(dirfd, path, absolute)) {
    announce_change_at(dirfd, path);
    return delete_real(real_path);
  }
  announce_change(absolute);
  struct stat status;
  const bool regular =
      ensure(real.fstatat, "fstatat")(dirfd, real_path, &status, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISREG(status.st_mode);
  // A file written and closed just before is reported while it is still there.
  sync_with_supervisor();
  const int result = delete_real(real_path);
  const int saved = errno;
  if (result == 0 && regular) report_done(Op::deleted, absolute);
  errno = saved;
  return result;
}

// A rename with either side in the workspace, reported once done (the new path's bytes become
// a file_write, the old path a file_delete), in both modes.
template <typename RenameReal>
int taped_rename(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                 RenameReal&& rename_real) {
  const InView real_old(old_path);
  const InView real_new(new_path);
  if (!recording_or_replaying()) return rename_real(real_old, real_new);
  HookScope scope;
  char from[kPathMax], to[kPathMax];
  if (!absolute_path(old_dirfd, old_path, from) || !absolute_path(new_dirfd, new_path, to)) {
    return rename_real(real_old, real_new);
  }
  from_view(from);
  from_view(to);
  announce_change(from);
  announce_change(to);
  if (!in_workspace(from) && !in_workspace(to)) return rename_real(real_old, real_new);
  // A file written and closed just before is reported under its old name, in both modes.
  sync_with_supervisor();
  const int result = rename_real(real_old, real_new);
  const int saved = errno;
  if (result == 0) report_done(Op::renamed, from, to);
  errno = saved;
  return result;
}

// mkstemp and friends open through libc's internal calls: the template itself is rewritten,
// and the name libc chose is put back in the program's template.
template <typename MakeReal>
auto make_temporary(char* name_template, MakeReal&& make_real) {
  char buffer[kPathMax];
  const char* in_view = to_view(name_template, buffer);
  if (in_view == name_template) return make_real(name_template);
  auto result = make_real(buffer);
  from_view(buffer);
  memcpy(name_template, buffer, strlen(name_template));
  return result;
}

// The name mkstemp and friends and mkdtemp choose: glibc draws its letters with its own system
// call, past the hooks, so a replay chose other names than the recording's, and a command line
// holding one (Gemini CLI's `/tmp/gemini-shell-XXXXXX` for each shell command) was not on the
// tape. While recording or replaying they are drawn from the process's entropy stream, as its
// getrandom() is, and the file or folder is made here (`make(path)`: true when made; on EEXIST
// the next name is drawn). False with errno set when none is made (EINVAL: a template whose
// letters before its `suffix` are not "XXXXXX").
constexpr char kNameLetters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
constexpr int kNamesTried = 1000;

template <typename Make>
bool make_with_drawn_name(char* name_template, size_t suffix, Make&& make) {
  const size_t length = strlen(name_template);
  if (suffix > length || length - suffix < 6 ||
      memcmp(name_template + length - suffix - 6, "XXXXXX", 6) != 0) {
    errno = EINVAL;
    return false;
  }
  char* letters = name_template + length - suffix - 6;
  for (int attempt = 0; attempt < kNamesTried; ++attempt) {
    unsigned char drawn[6];
    draw_entropy(drawn, sizeof drawn);
    for (size_t i = 0; i < sizeof drawn; ++i) {
      letters[i] = kNameLetters[drawn[i] % (sizeof kNameLetters - 1)];
    }
    if (make(name_template)) return true;
    if (errno != EEXIST) return false;
  }
  errno = EEXIST;
  return false;
}

// A file made by mkstemp and friends (libc opens it internally, past the open hooks): written
// in the workspace, its bytes are taped when it is closed, as for any other written file.
template <typename MakeReal>
int temporary_file(char* name_template, MakeReal&& make_real) {
  const int fd = make_temporary(name_template, make_real);
  char absolute[kPathMax];
  if (fd >= 0 && recording_or_replaying() && workspace_path(AT_FDCWD, name_template, absolute)) {
    HookScope scope;
    announce_change(absolute, /*made=*/true);
    track_written(fd);
  }
  return fd;
}

// mkostemps' work with a drawn name (make_with_drawn_name), or libc's own when the run draws
// nothing.
template <typename MakeReal>
int temporary_file_named(char* name_template, size_t suffix, int flags, MakeReal&& make_real) {
  if (!recording_or_replaying() || !entropy_on()) return temporary_file(name_template, make_real);
  return temporary_file(name_template, [&](char* path) {
    int fd = -1;
    const int open_flags = O_RDWR | O_CREAT | O_EXCL | (flags & ~O_ACCMODE);
    const bool made = make_with_drawn_name(path, suffix, [&](const char* name) {
      fd = ensure(real.open, "open")(name, open_flags, 0600);
      return fd >= 0;
    });
    return made ? fd : -1;
  });
}

void report_open_writes() {
  char path[kPathMax];
  written_fds.for_each([&](int fd) {
    if (untrack_written(fd) && fd_path(fd, path)) note_closed_write(path);
  });
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

int open(const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return open_path(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return open_path(path, flags | O_LARGEFILE, mode);
}

int __open_2(const char* path, int flags) {
  return open_path(path, flags, 0);
}

int __open64_2(const char* path, int flags) {
  return open_path(path, flags | O_LARGEFILE, 0);
}

int openat(int dirfd, const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return openat_path(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return openat_path(dirfd, path, flags | O_LARGEFILE, mode);
}

int __openat_2(int dirfd, const char* path, int flags) {
  return openat_path(dirfd, path, flags, 0);
}

int __openat64_2(int dirfd, const char* path, int flags) {
  return openat_path(dirfd, path, flags | O_LARGEFILE, 0);
}

int creat(const char* path, mode_t mode) {
  return open_path(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

int creat64(const char* path, mode_t mode) {
  return open_path(path, O_WRONLY | O_CREAT | O_TRUNC | O_LARGEFILE, mode);
}

FILE* fopen(const char* path, const char* mode) {
  return taped_fopen(path, mode);
}

FILE* fopen64(const char* path, const char* mode) {
  return taped_fopen(path, mode);
}

int close(int fd) {
  return taped_close(fd, [&] { return ensure(real.close, "close")(fd); });
}

int fclose(FILE* stream) {
  if (stream == nullptr) return ensure(real.fclose, "fclose")(stream);
  const int fd = fileno(stream);
  return taped_close(fd, [&] { return ensure(real.fclose, "fclose")(stream); });
}

int unlink(const char* path) {
  return taped_delete(AT_FDCWD, path,
                      [&](const char* p) { return ensure(real.unlink, "unlink")(p); });
}

int unlinkat(int dirfd, const char* path, int flags) {
  if ((flags & AT_REMOVEDIR) != 0) {
    return ensure(real.unlinkat, "unlinkat")(dirfd, InView(path), flags);
  }
  return taped_delete(dirfd, path, [&](const char* p) {
    return ensure(real.unlinkat, "unlinkat")(dirfd, p, flags);
  });
}

int remove(const char* path) {
  return taped_delete(AT_FDCWD, path,
                      [&](const char* p) { return ensure(real.remove, "remove")(p); });
}

int rename(const char* old_path, const char* new_path) {
  return taped_rename(
      AT_FDCWD, old_path, AT_FDCWD, new_path,
      [&](const char* from, const char* to) { return ensure(real.rename, "rename")(from, to); });
}

int renameat(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path) {
  return taped_rename(old_dirfd, old_path, new_dirfd, new_path,
                      [&](const char* from, const char* to) {
                        return ensure(real.renameat, "renameat")(old_dirfd, from, new_dirfd, to);
                      });
}

int renameat2(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
              unsigned int flags) {
  return taped_rename(
      old_dirfd, old_path, new_dirfd, new_path, [&](const char* from, const char* to) {
        return ensure(real.renameat2, "renameat2")(old_dirfd, from, new_dirfd, to, flags);
      });
}

int mkstemp(char* name_template) {
  return temporary_file_named(name_template, 0, 0,
                              [](char* t) { return ensure(real.mkstemp, "mkstemp")(t); });
}

int mkstemp64(char* name_template) {
  return mkstemp(name_template);
}

int mkostemp(char* name_template, int flags) {
  return temporary_file_named(name_template, 0, flags,
                              [&](char* t) { return ensure(real.mkostemp, "mkostemp")(t, flags); });
}

int mkostemp64(char* name_template, int flags) {
  return mkostemp(name_template, flags);
}

int mkstemps(char* name_template, int suffix) {
  return temporary_file_named(name_template, suffix < 0 ? SIZE_MAX : suffix, 0, [&](char* t) {
    return ensure(real.mkstemps, "mkstemps")(t, suffix);
  });
}

int mkstemps64(char* name_template, int suffix) {
  return mkstemps(name_template, suffix);
}

int mkostemps(char* name_template, int suffix, int flags) {
  return temporary_file_named(name_template, suffix < 0 ? SIZE_MAX : suffix, flags, [&](char* t) {
    return ensure(real.mkostemps, "mkostemps")(t, suffix, flags);
  });
}

int mkostemps64(char* name_template, int suffix, int flags) {
  return mkostemps(name_template, suffix, flags);
}

char* mkdtemp(char* name_template) {
  if (!recording_or_replaying() || !entropy_on()) {
    char* made =
        make_temporary(name_template, [](char* t) { return ensure(real.mkdtemp, "mkdtemp")(t); });
    return made != nullptr ? name_template : nullptr;
  }
  const bool made = make_temporary(name_template, [](char* path) {
    return make_with_drawn_name(
        path, 0, [](const char* name) { return ensure(real.mkdir, "mkdir")(name, 0700) == 0; });
  });
  return made ? name_template : nullptr;
}

}  // extern "C"
