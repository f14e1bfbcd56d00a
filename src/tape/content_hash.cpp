// BLAKE3 through the official C implementation (SIMD variants chosen at run time).
#include "tape/content_hash.hpp"

#include "tapedeck/tape.hpp"

namespace tapedeck {

std::string detail::ContentHasher::finish() const {
  uint8_t digest[BLAKE3_OUT_LEN];
  blake3_hasher_finalize(&hasher_, digest, BLAKE3_OUT_LEN);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * BLAKE3_OUT_LEN, '\0');
  for (size_t i = 0; i < BLAKE3_OUT_LEN; ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 0x0F];
  }
  return hex;
}

std::string content_hash(std::string_view bytes) {
  detail::ContentHasher hasher;
  hasher.update(bytes);
  return hasher.finish();
}

}  // namespace tapedeck
