// BLAKE3 through the official C implementation (SIMD variants chosen at run time).
#include <blake3.h>

#include "tapedeck/tape.hpp"

namespace tapedeck {

std::string content_hash(std::string_view bytes) {
  blake3_hasher hasher;
  blake3_hasher_init(&hasher);
  blake3_hasher_update(&hasher, bytes.data(), bytes.size());
  uint8_t digest[BLAKE3_OUT_LEN];
  blake3_hasher_finalize(&hasher, digest, BLAKE3_OUT_LEN);

  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * BLAKE3_OUT_LEN, '\0');
  for (size_t i = 0; i < BLAKE3_OUT_LEN; ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 0x0F];
  }
  return hex;
}

}  // namespace tapedeck
