// Reading parts of a program's ELF file by offset: a program can be 100 MB (node), and what is
// wanted of it (section headers, a symbol table, a function's bytes) is a few kilobytes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tapedeck::floor {

// Reads exactly `size` bytes at `offset`; false when the file is shorter or unreadable.
bool read_at(int fd, void* into, size_t size, uint64_t offset);

}  // namespace tapedeck::floor
