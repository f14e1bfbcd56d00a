// The entropy axis's stream, shared by the preload's entropy hooks and the system-call floor:
// BLAKE3's extendable output keyed by the run's seed, over a process's place in the tree ("0" the
// root, "0.k" its k-th fork, …). Header-only, no allocation: it runs inside the preload.
#pragma once

#include <blake3.h>

#include <cstdint>
#include <string_view>

namespace tapedeck::entropy_stream {

// The 32-byte seed from its 64 lowercase hex digits (as the tape's `entropy` record holds it);
// false, `seed` unspecified, when they are not that.
inline bool seed_from_hex(std::string_view hex, uint8_t seed[BLAKE3_KEY_LEN]) {
  if (hex.size() != 2 * BLAKE3_KEY_LEN) return false;
  auto value = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < BLAKE3_KEY_LEN; ++i) {
    const int high = value(hex[2 * i]);
    const int low = value(hex[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    seed[i] = static_cast<uint8_t>(high * 16 + low);
  }
  return true;
}

// `hasher` set to read `place`'s stream: blake3_hasher_finalize_seek(&hasher, offset, …).
inline void open(blake3_hasher& hasher, const uint8_t seed[BLAKE3_KEY_LEN],
                 std::string_view place) {
  blake3_hasher_init_keyed(&hasher, seed);
  blake3_hasher_update(&hasher, place.data(), place.size());
}

}  // namespace tapedeck::entropy_stream
