#include "floor/elf_file.hpp"

#include <unistd.h>

#include <cerrno>

namespace tapedeck::floor {

bool read_at(int fd, void* into, size_t size, uint64_t offset) {
  auto* out = static_cast<char*>(into);
  while (size > 0) {
    const ssize_t got = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    out += got;
    size -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

}  // namespace tapedeck::floor
