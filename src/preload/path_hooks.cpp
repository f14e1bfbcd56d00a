// Calls that only name paths (folders, metadata, links, the cwd): the kernel answers them, on
// the replay's private view of the workspace; in copy mode the path is rewritten to name the
// copy, and the paths the kernel gives back are rewritten the other way.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

#include <cerrno>
#include <cstring>

#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

// Copy mode: a path the kernel wrote into the program's buffer (a cwd, a link target), as the
// program believes it to be. `size` is the length written (readlink does not terminate).
ssize_t link_from_view(char* buffer, ssize_t size, size_t capacity) {
  if (config.view_len == 0 || size <= 0 || static_cast<size_t>(size) >= kPathMax) return size;
  char text[kPathMax];
  memcpy(text, buffer, static_cast<size_t>(size));
  text[size] = '\0';
  if (!under(text, config.view, config.view_len)) return size;
  from_view(text);
  const size_t length = strlen(text);
  memcpy(buffer, text, length < capacity ? length : capacity);
  return static_cast<ssize_t>(length < capacity ? length : capacity);
}

char* cwd_from_view(char* result) {
  if (result != nullptr) from_view(result);
  return result;
}

const timespec* times_with_clock(const timespec* times, timespec (&fixed)[2]) {
  if (config.mode != Mode::replay) return times;
  if (times == nullptr) {
    fixed[0] = fixed[1] = file_time_now();
    return fixed;
  }
  if (times[0].tv_nsec != UTIME_NOW && times[1].tv_nsec != UTIME_NOW) return times;
  for (int i = 0; i < 2; ++i) fixed[i] = times[i].tv_nsec == UTIME_NOW ? file_time_now() : times[i];
  return fixed;
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

// ---- paths only: the kernel answers these, on the replay's view; in copy mode the path is
// rewritten to name the copy (and paths the kernel gives back, the other way) ---------------

int mkdir(const char* path, mode_t mode) {
  return ensure(real.mkdir, "mkdir")(InView(path), mode);
}

int mkdirat(int dirfd, const char* path, mode_t mode) {
  return ensure(real.mkdirat, "mkdirat")(dirfd, InView(path), mode);
}

int rmdir(const char* path) {
  return ensure(real.rmdir, "rmdir")(InView(path));
}

DIR* opendir(const char* path) {
  return ensure(real.opendir, "opendir")(InView(path));
}

int stat(const char* path, struct stat* out) {
  return ensure(real.stat, "stat")(InView(path), out);
}

int stat64(const char* path, struct stat64* out) {
  return stat(path, reinterpret_cast<struct stat*>(out));
}

int lstat(const char* path, struct stat* out) {
  return ensure(real.lstat, "lstat")(InView(path), out);
}

int lstat64(const char* path, struct stat64* out) {
  return lstat(path, reinterpret_cast<struct stat*>(out));
}

int fstatat(int dirfd, const char* path, struct stat* out, int flags) {
  return ensure(real.fstatat, "fstatat")(dirfd, InView(path), out, flags);
}

int fstatat64(int dirfd, const char* path, struct stat64* out, int flags) {
  return fstatat(dirfd, path, reinterpret_cast<struct stat*>(out), flags);
}

int statx(int dirfd, const char* path, int flags, unsigned int mask, struct statx* out) {
  return ensure(real.statx, "statx")(dirfd, InView(path), flags, mask, out);
}

int access(const char* path, int how) {
  return ensure(real.access, "access")(InView(path), how);
}

int faccessat(int dirfd, const char* path, int how, int flags) {
  return ensure(real.faccessat, "faccessat")(dirfd, InView(path), how, flags);
}

int eaccess(const char* path, int how) {
  return ensure(real.eaccess, "eaccess")(InView(path), how);
}

int euidaccess(const char* path, int how) {
  return ensure(real.euidaccess, "euidaccess")(InView(path), how);
}

int chdir(const char* path) {
  return ensure(real.chdir, "chdir")(InView(path));
}

int chmod(const char* path, mode_t mode) {
  return ensure(real.chmod, "chmod")(InView(path), mode);
}

int fchmodat(int dirfd, const char* path, mode_t mode, int flags) {
  return ensure(real.fchmodat, "fchmodat")(dirfd, InView(path), mode, flags);
}

int chown(const char* path, uid_t owner, gid_t group) {
  return ensure(real.chown, "chown")(InView(path), owner, group);
}

int lchown(const char* path, uid_t owner, gid_t group) {
  return ensure(real.lchown, "lchown")(InView(path), owner, group);
}

int fchownat(int dirfd, const char* path, uid_t owner, gid_t group, int flags) {
  return ensure(real.fchownat, "fchownat")(dirfd, InView(path), owner, group, flags);
}

// A link's target is rewritten too: an absolute one into the workspace must not lead out of
// the copy (readlink gives it back as the program wrote it).
int symlink(const char* target, const char* path) {
  before_change(AT_FDCWD, path);
  return ensure(real.symlink, "symlink")(InView(target), InView(path));
}

int symlinkat(const char* target, int dirfd, const char* path) {
  before_change(dirfd, path);
  return ensure(real.symlinkat, "symlinkat")(InView(target), dirfd, InView(path));
}

ssize_t readlink(const char* path, char* out, size_t size) {
  return link_from_view(out, ensure(real.readlink, "readlink")(InView(path), out, size), size);
}

ssize_t __readlink_chk(const char* path, char* out, size_t size, size_t) {
  return readlink(path, out, size);
}

ssize_t readlinkat(int dirfd, const char* path, char* out, size_t size) {
  return link_from_view(out, ensure(real.readlinkat, "readlinkat")(dirfd, InView(path), out, size),
                        size);
}

ssize_t __readlinkat_chk(int dirfd, const char* path, char* out, size_t size, size_t) {
  return readlinkat(dirfd, path, out, size);
}

// (A file a hard link is made to is changed by writes through its new name: it is announced too.)
int link(const char* from, const char* to) {
  before_change(AT_FDCWD, from);
  before_change(AT_FDCWD, to);
  return ensure(real.link, "link")(InView(from), InView(to));
}

int linkat(int from_dirfd, const char* from, int to_dirfd, const char* to, int flags) {
  before_change(from_dirfd, from);
  before_change(to_dirfd, to);
  return ensure(real.linkat, "linkat")(from_dirfd, InView(from), to_dirfd, InView(to), flags);
}

int truncate(const char* path, off_t length) {
  before_change(AT_FDCWD, path);
  return ensure(real.truncate, "truncate")(InView(path), length);
}

int truncate64(const char* path, off64_t length) {
  before_change(AT_FDCWD, path);
  return ensure(real.truncate64, "truncate64")(InView(path), length);
}

// "Now" as a file time (a NULL time) is, in a replay, the program's clock (file_time_now): set
// through utimensat, which keeps its milliseconds, where utime would keep whole seconds.
int utime(const char* path, const struct utimbuf* times) {
  if (times == nullptr && config.mode == Mode::replay) {
    timespec fixed[2];
    return ensure(real.utimensat, "utimensat")(AT_FDCWD, InView(path),
                                               times_with_clock(nullptr, fixed), 0);
  }
  return ensure(real.utime, "utime")(InView(path), times);
}

int utimes(const char* path, const struct timeval times[2]) {
  if (times == nullptr) return utime(path, nullptr);
  return ensure(real.utimes, "utimes")(InView(path), times);
}

int lutimes(const char* path, const struct timeval times[2]) {
  if (times == nullptr && config.mode == Mode::replay) {
    timespec fixed[2];
    return ensure(real.utimensat, "utimensat")(
        AT_FDCWD, InView(path), times_with_clock(nullptr, fixed), AT_SYMLINK_NOFOLLOW);
  }
  return ensure(real.lutimes, "lutimes")(InView(path), times);
}

int utimensat(int dirfd, const char* path, const struct timespec times[2], int flags) {
  timespec fixed[2];
  return ensure(real.utimensat, "utimensat")(dirfd, InView(path), times_with_clock(times, fixed),
                                             flags);
}

int futimens(int fd, const struct timespec times[2]) {
  timespec fixed[2];
  return ensure(real.futimens, "futimens")(fd, times_with_clock(times, fixed));
}

ssize_t getxattr(const char* path, const char* name, void* value, size_t size) {
  return ensure(real.getxattr, "getxattr")(InView(path), name, value, size);
}

ssize_t lgetxattr(const char* path, const char* name, void* value, size_t size) {
  return ensure(real.lgetxattr, "lgetxattr")(InView(path), name, value, size);
}

int setxattr(const char* path, const char* name, const void* value, size_t size, int flags) {
  return ensure(real.setxattr, "setxattr")(InView(path), name, value, size, flags);
}

int lsetxattr(const char* path, const char* name, const void* value, size_t size, int flags) {
  return ensure(real.lsetxattr, "lsetxattr")(InView(path), name, value, size, flags);
}

ssize_t listxattr(const char* path, char* list, size_t size) {
  return ensure(real.listxattr, "listxattr")(InView(path), list, size);
}

ssize_t llistxattr(const char* path, char* list, size_t size) {
  return ensure(real.llistxattr, "llistxattr")(InView(path), list, size);
}

int removexattr(const char* path, const char* name) {
  return ensure(real.removexattr, "removexattr")(InView(path), name);
}

int lremovexattr(const char* path, const char* name) {
  return ensure(real.lremovexattr, "lremovexattr")(InView(path), name);
}

int mkfifo(const char* path, mode_t mode) {
  return ensure(real.mkfifo, "mkfifo")(InView(path), mode);
}

int mknod(const char* path, mode_t mode, dev_t device) {
  return ensure(real.mknod, "mknod")(InView(path), mode, device);
}

char* getcwd(char* out, size_t size) {
  char* result = ensure(real.getcwd, "getcwd")(out, size);
  if (result == nullptr || config.view_len == 0 || !under(result, config.view, config.view_len)) {
    return result;
  }
  char text[kPathMax];
  snprintf(text, sizeof text, "%s", result);
  from_view(text);
  const size_t length = strlen(text);
  if (out == nullptr) {  // libc allocated it to fit the copy's path: allocate again
    free(result);
    result = static_cast<char*>(malloc(size > length ? size : length + 1));
    if (result == nullptr) return nullptr;
  } else if (length >= size) {
    errno = ERANGE;
    return nullptr;
  }
  memcpy(result, text, length + 1);
  return result;
}

char* __getcwd_chk(char* out, size_t size, size_t) {
  return getcwd(out, size);
}

char* get_current_dir_name(void) {
  return getcwd(nullptr, 0);
}

char* realpath(const char* path, char* out) {
  return cwd_from_view(ensure(real.realpath, "realpath")(InView(path), out));
}

char* __realpath_chk(const char* path, char* out, size_t) {
  return realpath(path, out);
}

}  // extern "C"
