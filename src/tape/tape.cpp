#include <set>

#include "tape/atomic_file.hpp"
#include "tape/compressed_tape.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck {

namespace {
constexpr size_t kFlushBytes = 1 << 20;
}

Tape Tape::load(const std::filesystem::path& path) {
  auto reader = TapeReader::open(path);
  Tape tape(reader->header());
  Record record;
  while (reader->next(record)) tape.records.push_back(std::move(record));
  if (reader->torn_tail()) tape.torn_tail_bytes = reader->torn_tail()->bytes;
  tape.cas_dir_ = cas_dir_for(path);
  return tape;
}

void Tape::persist(const std::filesystem::path& path) const {
  // CAS entries first, so that no record on disk ever names an entry that is not there yet.
  const std::filesystem::path target_cas = cas_dir_for(path);
  cas::write_entries(target_cas, cas_);
  if (!cas_dir_.empty() && cas_dir_ != target_cas) {
    std::set<std::string_view> carried;
    cas::Carrier carrier(cas_dir_, target_cas);
    for (const Record& record : records) {
      for_each_payload(record.kind, [&](const Payload& payload) {
        if (!payload.in_cas() || cas_.count(payload.content_hash)) return;
        if (!is_valid_cas_name(payload.content_hash)) return;  // never joined to a path
        if (!carried.insert(payload.content_hash).second) return;
        try {
          carrier.carry(payload.content_hash);
        } catch (const TapeError&) {
          // A missing source entry stays missing; `tapedeck verify` reports it.
        }
      });
    }
  }

  detail::TapeOutput file(path);
  LineBuffer buffer;
  buffer.append_header(header);
  for (const Record& record : records) {
    buffer.append_record(record);
    if (buffer.size() >= kFlushBytes) {
      file.write(buffer.view());
      buffer.clear();
    }
  }
  file.write(buffer.view());
  file.commit();
}

std::string Tape::resolve(const Payload& payload) const {
  if (!payload.in_cas()) return payload.text;
  auto held = cas_.find(payload.content_hash);
  std::string bytes;
  if (held != cas_.end()) {
    bytes = held->second;
  } else if (!cas_dir_.empty()) {
    bytes = cas::read_entry(cas_dir_, payload.content_hash);
  } else {
    throw TapeError("<tape in memory>", 0, "CAS entry " + payload.content_hash + " is not held");
  }
  if (bytes.size() != payload.cas_len_bytes) {
    throw TapeError((cas_dir_ / payload.content_hash).string(), 0,
                    "CAS entry holds " + std::to_string(bytes.size()) +
                        " bytes but the record says " + std::to_string(payload.cas_len_bytes));
  }
  return bytes;
}

}  // namespace tapedeck
