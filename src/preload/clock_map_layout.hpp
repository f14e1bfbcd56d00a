// The replay's clock map as the supervisor gathers it from a recording, and its layout in the
// memory every process of the tree maps (see clock_map.hpp). The supervisor's alone: the preload
// only reads the laid-out map.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "preload/clock_map.hpp"

namespace tapedeck::preload {

struct ClockMapPlan {
  // Per stretch, per clock (wall, monotonic): each lane's reads in their recorded order, by lane
  // id (0: the reads without a lane).
  using Lanes = std::map<uint64_t, std::vector<int64_t>>;
  std::vector<std::array<Lanes, 2>> stretches = std::vector<std::array<Lanes, 2>>(1);
  // Per stretch, the lanes of the thread whose record ends it (ClockStretch::cut_by); a stretch
  // not listed is ended by a record no one thread owns.
  std::map<uint64_t, std::array<uint64_t, 2>> cut_by;
  uint64_t lane_count = 0;              // lane ids 1 … lane_count are named
  std::vector<std::string> lane_names;  // lane k's at k - 1
  uint64_t after_wait_lane = 0;         // kAfterWaitLane's id (0: none)
  std::array<int64_t, 2> latest{};      // where each clock starts

  uint64_t lane_entries() const {
    uint64_t entries = 0;
    for (const auto& stretch : stretches) {
      for (const Lanes& lanes : stretch) entries += lanes.size() - lanes.count(0);
    }
    return entries;
  }
  uint64_t values() const {
    uint64_t values = 0;
    for (const auto& stretch : stretches) {
      for (const Lanes& lanes : stretch) {
        for (const auto& [lane, reads] : lanes) values += reads.size();
      }
    }
    return values;
  }
  bool threads_laned() const {
    return std::any_of(lane_names.begin(), lane_names.end(),
                       [](const std::string& name) { return is_thread_lane(name.c_str()); });
  }
  // Tapes with thread lanes, per lane id (0 … lane_count + 1): the stretches holding its reads of
  // each clock, and those that a record of its thread or of no one thread ends (ClockMap's lane
  // index); nothing for another tape.
  std::vector<std::array<std::vector<uint64_t>, 3>> lane_lists() const {
    if (!threads_laned()) return {};
    std::vector<std::array<std::vector<uint64_t>, 3>> lists(lane_count + 2);
    for (uint64_t k = 0; k < stretches.size(); ++k) {
      for (size_t source = 0; source < 2; ++source) {
        for (const auto& [lane, reads] : stretches[k][source]) {
          if (!reads.empty() && lane < lists.size()) lists[lane][source].push_back(k);
        }
      }
      const auto owner = cut_by.find(k);
      for (uint64_t lane = 0; lane < lists.size(); ++lane) {
        if (owner == cut_by.end() || owner->second[0] == lane || owner->second[1] == lane) {
          lists[lane][2].push_back(k);
        }
      }
    }
    return lists;
  }
  static uint64_t entries(const std::vector<std::array<std::vector<uint64_t>, 3>>& lists) {
    uint64_t count = 0;
    for (const auto& lane : lists) {
      for (const auto& list : lane) count += list.size();
    }
    return count;
  }
  uint64_t bytes() const {
    return ClockMap::bytes_for(stretches.size(), lane_entries(), lane_count, values(),
                               entries(lane_lists()));
  }
};

// Lays `plan` out in `memory` (zeroed, plan.bytes() long, 8-byte aligned).
inline ClockMap* lay_out(const ClockMapPlan& plan, void* memory) {
  auto* map = new (memory) ClockMap();
  map->magic = ClockMap::kMagic;
  map->stretch_count = plan.stretches.size();
  map->lane_count = plan.lane_count;
  map->after_wait_lane = plan.after_wait_lane;
  map->lane_entries = plan.lane_entries();
  map->value_count = plan.values();
  for (uint64_t lane = 1; lane <= plan.lane_count && lane <= plan.lane_names.size(); ++lane) {
    const std::string& name = plan.lane_names[lane - 1];
    if (name.size() < kLaneNameBytes) std::memcpy(map->lane_name(lane), name.data(), name.size());
    if (is_thread_lane(name.c_str())) map->threads_laned = 1;
  }
  uint64_t value_at = 0;
  uint64_t lane_at = 0;
  const auto put_values = [&](const std::vector<int64_t>& reads) {
    const uint64_t start = value_at;
    for (int64_t value : reads) map->values()[value_at++] = value;
    return start;
  };
  for (size_t k = 0; k < plan.stretches.size(); ++k) {
    auto* stretch = new (&map->stretches()[k]) ClockStretch();
    const auto owner = plan.cut_by.find(k);
    stretch->cut_by[0] = owner != plan.cut_by.end() ? owner->second[0] : ClockStretch::kCutByAll;
    stretch->cut_by[1] = owner != plan.cut_by.end() ? owner->second[1] : ClockStretch::kCutByAll;
    for (int source = 0; source < 2; ++source) {
      const ClockMapPlan::Lanes& lanes = plan.stretches[k][static_cast<size_t>(source)];
      stretch->start[source] = value_at;
      if (const auto unlaned = lanes.find(0); unlaned != lanes.end()) {
        put_values(unlaned->second);
        stretch->count[source] = unlaned->second.size();
      }
      stretch->lanes_start[source] = lane_at;
      for (const auto& [lane, reads] : lanes) {
        if (lane == 0) continue;
        auto* entry = new (&map->lanes()[lane_at++]) ClockLane();
        entry->lane = lane;
        entry->count = reads.size();
        entry->start = put_values(reads);
      }
      stretch->lanes_count[source] = lane_at - stretch->lanes_start[source];
    }
  }
  // Each stretch's view ahead: the earliest first read of each clock in the next stretch that
  // has one, whatever its lane.
  std::array<int64_t, 2> ahead = {ClockStretch::kNothingAhead, ClockStretch::kNothingAhead};
  for (size_t k = plan.stretches.size(); k-- > 0;) {
    for (size_t source = 0; source < 2; ++source) {
      map->stretches()[k].ahead[source] = ahead[source];
      int64_t first = ClockStretch::kNothingAhead;
      for (const auto& [lane, reads] : plan.stretches[k][source]) {
        if (!reads.empty()) first = std::min(first, reads.front());
      }
      if (first != ClockStretch::kNothingAhead) ahead[source] = first;
    }
  }
  for (uint64_t lane = 0; lane < plan.lane_count + 2; ++lane) {
    for (int source = 0; source < 2; ++source) {
      new (&map->lane_latest(lane)[source]) std::atomic<int64_t>(plan.latest[source]);
      new (&map->lane_at(lane)[source]) std::atomic<uint64_t>(0);
    }
  }
  const auto lists = plan.lane_lists();
  map->lane_index_entries = ClockMapPlan::entries(lists);
  uint64_t entry = 0;
  for (uint64_t lane = 0; lane < lists.size(); ++lane) {
    for (size_t list = 0; list < 3; ++list) {
      map->lane_index(lane)[2 * list] = entry;
      map->lane_index(lane)[2 * list + 1] = lists[lane][list].size();
      for (const uint64_t stretch : lists[lane][list]) map->lane_index_data()[entry++] = stretch;
    }
  }
  map->latest_ms[0] = plan.latest[0];
  map->latest_ms[1] = plan.latest[1];
  return map;
}

}  // namespace tapedeck::preload
