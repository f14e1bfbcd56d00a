// How the canonical encoder escapes a string's bytes, shared by the encoder and the canonical
// decoder (which accepts exactly the forms the encoder writes). Internal to the tape room.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace tapedeck::detail {

// For each byte: 0 = copied raw, otherwise the letter after the backslash ('u' = \u00xx).
inline constexpr auto kEscape = [] {
  std::array<char, 256> table{};
  for (int c = 0; c < 0x20; ++c) table[c] = 'u';
  table['\b'] = 'b';
  table['\f'] = 'f';
  table['\n'] = 'n';
  table['\r'] = 'r';
  table['\t'] = 't';
  table['"'] = '"';
  table['\\'] = '\\';
  return table;
}();

// Of eight bytes read little-endian, a mask whose lowest set bit is the high bit of the first
// byte needing escape (below 0x20, '"' or '\\'); zero when none does. Bits above the lowest may
// be spurious (borrows), so only the lowest is meaningful.
inline uint64_t escape_mask(uint64_t word) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  auto has_zero = [](uint64_t v) { return (v - kOnes) & ~v & kHighs; };
  uint64_t below_space = (word - kOnes * 0x20) & ~word & kHighs;
  return below_space | has_zero(word ^ (kOnes * '"')) | has_zero(word ^ (kOnes * '\\'));
}

// How many of the eight bytes come before the first that needs escaping (8 when none does).
inline size_t plain_prefix(uint64_t word) {
  static_assert(std::endian::native == std::endian::little, "words are read little-endian");
  const uint64_t mask = escape_mask(word);
  return mask == 0 ? 8 : static_cast<size_t>(std::countr_zero(mask)) / 8;
}

}  // namespace tapedeck::detail
