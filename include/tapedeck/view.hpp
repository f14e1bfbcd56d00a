// `tapedeck view`: one self-contained HTML file (no network, no CDN) showing a tape as a timeline
// over virtual time: a lane per kind, sleeps and subprocesses as spans, phases shaded, and a
// click on any event showing its fields and payload (JSON folded, CAS payloads embedded up to a
// cap, binary as hex). With a second tape, both timelines, the fidelity divergences marked.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include "tapedeck/fidelity.hpp"

namespace tapedeck::view {

struct ViewOptions {
  std::optional<std::filesystem::path> against;  // a replay's tape, compared with the first
  fidelity::Mode mode = fidelity::Mode::semantic;
  size_t cas_embed_cap = 64 * 1024;    // CAS payloads larger than this are named, not embedded
  size_t cas_embed_budget = 32 << 20;  // and once this much is embedded, the rest are named too
};

struct ViewReport {
  uint64_t records = 0;      // of the first tape
  uint64_t divergences = 0;  // with `against`
  uint64_t html_bytes = 0;
};

// Writes the page atomically. Throws TapeError when a tape cannot be read or the page written.
ViewReport write_html(const std::filesystem::path& tape, const std::filesystem::path& out,
                      const ViewOptions& options = {});

}  // namespace tapedeck::view
