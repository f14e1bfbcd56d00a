// The tape's content hash (lowercase hex BLAKE3, see content_hash() in tape.hpp) of bytes that
// come in pieces: what a program prints, say, hashed as it passes.
#pragma once

#include <blake3.h>

#include <string>
#include <string_view>

namespace tapedeck::detail {

class ContentHasher {
 public:
  ContentHasher() { blake3_hasher_init(&hasher_); }
  void update(std::string_view bytes) {
    blake3_hasher_update(&hasher_, bytes.data(), bytes.size());
  }
  // The hash of everything given so far.
  std::string finish() const;

 private:
  blake3_hasher hasher_;
};

}  // namespace tapedeck::detail
