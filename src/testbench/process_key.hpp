// Internal to the testbench room: how replay files subprocess recordings.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tapedeck::detail {

// One key per (program, args, cwd): NUL-separated, so no two tuples share it.
std::string process_tuple_key(const std::string& program, const std::vector<std::string>& args,
                              const std::optional<std::string>& cwd);

}  // namespace tapedeck::detail
