// Paths as the hooks see them: made absolute, inside the workspace or not, and in copy mode
// rewritten between the workspace and its copy.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

// A path through one of the process's own descriptors: Bun names a folder's files
// "/proc/self/fd/9/notes.txt" after opening the folder as descriptor 9. Sets `fd` and `rest`
// (what follows the number, without its slash; empty for the descriptor itself).
bool through_descriptor(const char* path, int& fd, const char*& rest) {
  if (path[1] != 'p' && path[1] != 'd') return false;  // (most paths: one comparison)
  static constexpr const char* kPrefixes[] = {"/proc/self/fd/", "/dev/fd/",
                                              "/proc/thread-self/fd/"};
  for (const char* prefix : kPrefixes) {
    const size_t length = strlen(prefix);
    if (strncmp(path, prefix, length) != 0) continue;
    const char* digit = path + length;
    long number = 0;
    while (*digit >= '0' && *digit <= '9' && number < (1 << 24))
      number = number * 10 + (*digit++ - '0');
    if (digit == path + length || (*digit != '\0' && *digit != '/')) return false;
    fd = static_cast<int>(number);
    rest = *digit == '/' ? digit + 1 : digit;
    return true;
  }
  return false;
}

// `path` (relative to `dirfd`) made absolute and lexically normal into `out`; false when that
// cannot be done (no cwd, a path past PATH_MAX). A path through a descriptor names what the
// descriptor holds.
bool absolute_path(int dirfd, const char* path, char* out) {
  if (path == nullptr || path[0] == '\0') return false;
  int descriptor = -1;
  const char* rest = nullptr;
  if (path[0] == '/' && through_descriptor(path, descriptor, rest)) {
    if (*rest == '\0') return fd_path(descriptor, out);
    dirfd = descriptor;
    path = rest;
  }
  char joined[2 * kPathMax];
  size_t size = 0;
  if (path[0] != '/') {
    if (dirfd == AT_FDCWD) {
      if (ensure(real.getcwd, "getcwd")(joined, kPathMax) == nullptr) return false;
      size = strlen(joined);
    } else {
      char link[64];
      snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
      const ssize_t got = ensure(real.readlink, "readlink")(link, joined, kPathMax - 1);
      if (got <= 0) return false;
      size = static_cast<size_t>(got);
    }
    joined[size++] = '/';
  }
  const size_t path_len = strlen(path);
  if (size + path_len >= sizeof joined) return false;
  memcpy(joined + size, path, path_len + 1);

  // Normalize: drop empty and "." components, resolve ".." lexically.
  size_t out_size = 0;
  const char* cursor = joined;
  while (*cursor != '\0') {
    while (*cursor == '/') ++cursor;
    const char* end = cursor;
    while (*end != '\0' && *end != '/') ++end;
    const size_t part = static_cast<size_t>(end - cursor);
    if (part == 0 || (part == 1 && cursor[0] == '.')) {
    } else if (part == 2 && cursor[0] == '.' && cursor[1] == '.') {
      while (out_size > 0 && out[out_size - 1] != '/') --out_size;
      if (out_size > 0) --out_size;
    } else {
      if (out_size + 1 + part >= kPathMax) return false;
      out[out_size++] = '/';
      memcpy(out + out_size, cursor, part);
      out_size += part;
    }
    cursor = end;
  }
  if (out_size == 0) out[out_size++] = '/';
  out[out_size] = '\0';
  return true;
}

bool in_workspace(const char* absolute) {
  return config.workspace_len > 0 &&
         strncmp(absolute, config.workspace, config.workspace_len) == 0 &&
         absolute[config.workspace_len] == '/' && absolute[config.workspace_len + 1] != '\0';
}

// Whether `path` is `root` or lies under it.
bool under(const char* path, const char* root, size_t root_len) {
  return root_len > 0 && strncmp(path, root, root_len) == 0 &&
         (path[root_len] == '\0' || path[root_len] == '/');
}

// Replaces the prefix `from` (of `from_len` bytes) of `path` with `to`, into `out`.
bool swap_prefix(const char* path, size_t from_len, const char* to, size_t to_len, char* out) {
  const size_t rest = strlen(path + from_len);
  if (to_len + rest >= kPathMax) return false;
  memmove(out + to_len, path + from_len, rest + 1);  // out may be path itself
  memcpy(out, to, to_len);
  return true;
}

// Copy mode: an absolute workspace path, made to name the copy; any other path as it is.
// Safe anywhere (no lock, no allocation), so every hook applies it, inside a hook or not.
const char* to_view(const char* path, char* buffer) {
  if (config.view_len == 0 || path == nullptr || path[0] != '/' ||
      !under(path, config.workspace, config.workspace_len) ||
      !swap_prefix(path, config.workspace_len, config.view, config.view_len, buffer)) {
    return path;
  }
  return buffer;
}

// Copy mode: a path the kernel gave (a cwd, a link, an fd's name) as the program believes it
// to be, rewritten in place.
void from_view(char* path) {
  if (config.view_len > 0 && path != nullptr && under(path, config.view, config.view_len)) {
    swap_prefix(path, config.view_len, config.workspace, config.workspace_len, path);
  }
}

// `path` (relative to `dirfd`) made absolute, as the program names it, into `out` when it lies
// inside the workspace; false otherwise, and the caller passes it through untouched.
bool workspace_path(int dirfd, const char* path, char* out) {
  if (path == nullptr || config.workspace_len == 0) return false;
  int descriptor = -1;
  const char* rest = nullptr;
  if (path[0] == '/' && !under(path, config.workspace, config.workspace_len) &&
      !under(path, config.view, config.view_len) && !through_descriptor(path, descriptor, rest)) {
    return false;  // the common case (libraries, the interpreter's own files): no copy at all
  }
  if (!absolute_path(dirfd, path, out)) return false;
  from_view(out);
  return in_workspace(out);
}

bool fd_path(int fd, char* out) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t got = ensure(real.readlink, "readlink")(link, out, kPathMax - 1);
  if (got <= 0) return false;
  out[got] = '\0';
  from_view(out);
  return true;
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop
