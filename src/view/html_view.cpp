#include <set>
#include <string>

#include "tape/atomic_file.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/view.hpp"

namespace tapedeck::view {

namespace detail {
extern const char kTimelineHtml[];
}

namespace {

constexpr std::string_view kDataSlot = "/*TAPEDECK_DATA*/";

std::string without_newline(std::string line) {
  if (!line.empty() && line.back() == '\n') line.pop_back();
  return line;
}

// One tape as the page's JSON: its header, every record line as is, and the CAS names it uses.
// Answers how many records it holds.
uint64_t append_tape(std::string& json, const std::filesystem::path& path, std::string_view role,
                     std::set<std::string>& cas_names) {
  auto reader = TapeReader::open(path, ReaderOptions{.canonical_lines = true});
  json += R"({"role":)" + json_string(role) + R"(,"path":)" + json_string(path.string()) +
          R"(,"header":)" + without_newline(encode_header_line(reader->header())) +
          R"(,"records":[)";
  uint64_t count = 0;
  while (const Record* record = reader->read()) {
    if (count++ > 0) json += ',';
    std::string_view line = reader->canonical_line();
    json.append(line.data(), line.size() - 1);
    for_each_payload(record->kind, [&](const Payload& payload) {
      if (payload.in_cas()) cas_names.insert(payload.content_hash);
    });
  }
  json += R"(],"torn_tail_bytes":)" +
          std::to_string(reader->torn_tail() ? reader->torn_tail()->bytes : 0) + "}";
  return count;
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes.size());
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0x0F];
  }
  return out;
}

// What the page shows of each CAS payload: the bytes (text, or hex when binary) up to the cap
// and while the budget lasts, else where the entry lives.
void append_cas(std::string& json, const std::vector<std::filesystem::path>& sidecars,
                const std::set<std::string>& names, size_t cap, size_t budget) {
  json += '{';
  bool first = true;
  for (const std::string& name : names) {
    if (!first) json += ',';
    first = false;
    json += json_string(name) + ':';
    if (!is_valid_cas_name(name)) {
      json += R"({"missing":true,"entry":"not a CAS name"})";
      continue;
    }
    std::string found;
    std::string entry_path = (sidecars.front() / name).string();
    for (const auto& sidecar : sidecars) {
      const std::filesystem::path path = sidecar / name;
      std::error_code error;
      const auto size = std::filesystem::file_size(path, error);
      if (error) continue;
      entry_path = path.string();
      if (size > cap || size > budget) {
        found = R"({"too_large":true,"entry":)" + json_string(entry_path) + "}";
        break;
      }
      budget -= size;
      try {
        const std::string bytes = cas::read_entry(sidecar, name);
        found = is_valid_utf8(bytes) ? R"({"encoding":"text","data":)" + json_string(bytes) + "}"
                                     : R"({"encoding":"hex","data":")" + hex(bytes) + "\"}";
      } catch (const TapeError& error_reading) {
        found = R"({"missing":true,"entry":)" + json_string(error_reading.what()) + "}";
      }
      break;
    }
    json += found.empty() ? R"({"missing":true,"entry":)" + json_string(entry_path) + "}" : found;
  }
  json += '}';
}

// '<' inside a <script> element could end it ("</script>") or open a comment ("<!--"); inside
// JSON it only occurs in strings, where \u003c means the same character.
std::string script_safe(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  for (char c : json) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

ViewReport write_html(const std::filesystem::path& tape, const std::filesystem::path& out,
                      const ViewOptions& options) {
  ViewReport report;
  std::set<std::string> cas_names;
  std::string title = tape.filename().string();
  if (options.against) title += " vs " + options.against->filename().string();

  std::string json = R"({"title":)" + json_string(title) + R"(,"generated_by":"tapedeck )" +
                     TAPEDECK_VERSION + R"(","cas_cap":)" + std::to_string(options.cas_embed_cap) +
                     R"(,"tapes":[)";
  report.records = append_tape(json, tape, "recorded", cas_names);
  std::vector<std::filesystem::path> sidecars{cas_dir_for(tape)};
  if (options.against) {
    json += ',';
    append_tape(json, *options.against, "replay", cas_names);
    sidecars.push_back(cas_dir_for(*options.against));
  }
  json += R"(],"cas":)";
  append_cas(json, sidecars, cas_names, options.cas_embed_cap, options.cas_embed_budget);

  if (options.against) {
    auto recorded = TapeReader::open(tape);
    auto replay = TapeReader::open(*options.against);
    const fidelity::Report fidelity = fidelity::compare(*recorded, *replay, options.mode);
    report.divergences = fidelity.divergences.size();
    json += R"(,"fidelity":{"mode":)" + json_string(fidelity::to_string(fidelity.mode)) +
            R"(,"score":)" + std::to_string(fidelity.score) + R"(},"divergences":[)";
    for (size_t i = 0; i < fidelity.divergences.size(); ++i) {
      const auto& d = fidelity.divergences[i];
      if (i) json += ',';
      json += R"({"seq":)" + std::to_string(d.seq) + R"(,"category":)" + json_string(d.category) +
              R"(,"message":)" + json_string(d.message) + R"(,"recorded":)" +
              (d.recorded_line.empty() ? "null" : d.recorded_line) + R"(,"replay":)" +
              (d.replay_line.empty() ? "null" : d.replay_line) + "}";
    }
    json += ']';
  } else {
    json += R"(,"fidelity":null,"divergences":null)";
  }
  json += '}';

  const std::string_view page = detail::kTimelineHtml;
  const size_t slot = page.find(kDataSlot);
  if (slot == std::string_view::npos)
    throw TapeError(out.string(), 0, "the page template has no data slot");
  tapedeck::detail::AtomicFile file(out);
  file.write(page.substr(0, slot));
  const std::string data = script_safe(json);
  file.write(data);
  file.write(page.substr(slot + kDataSlot.size()));
  file.commit();

  report.html_bytes = page.size() - kDataSlot.size() + data.size();
  return report;
}

}  // namespace tapedeck::view
