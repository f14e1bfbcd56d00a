#include "tapedeck/tape_paths.hpp"

#include <gtest/gtest.h>

#include "tapedeck/extensions.hpp"

namespace tapedeck {
namespace {

TEST(TapePaths, AWorkspacePathIsRelativeNormalAndBounded) {
  for (const char* safe :
       {"a", "d/x.txt", "dir with space/ünï\\", "..a/b..", ".hidden/.x", "a/...", "ｄ／．．"}) {
    EXPECT_EQ(workspace_path_problem(safe), std::nullopt) << safe;
  }
  const std::pair<std::string, std::string> unsafe[] = {
      {"", "is empty"},
      {"/tmp/escape.txt", "is absolute"},
      {"../x", "climbs out"},
      {"d/../../x", "climbs out"},
      {"a/..", "climbs out"},
      {"..", "climbs out"},
      {"a//b", "not in normal form"},
      {"./a", "not in normal form"},
      {"a/.", "not in normal form"},
      {"a/", "not in normal form"},
      {std::string("a\0b", 3), "NUL"},
      {std::string(300, 'x'), "component of 300 bytes"},
      {std::string(5000, 'x'), "5000 bytes long"},
  };
  for (const auto& [path, why] : unsafe) {
    const auto problem = workspace_path_problem(path);
    ASSERT_TRUE(problem.has_value()) << path;
    EXPECT_NE(problem->find(why), std::string::npos) << *problem;
  }
}

TEST(TapePaths, TheReferencesAbsolutePathsAreItsFormatButNoReplays) {
  // The reference's runtime names workspace files absolute: verify takes them on its tapes.
  EXPECT_EQ(workspace_path_problem("/work/src/main.rs", PathRule::any_writer), std::nullopt);
  EXPECT_NE(workspace_path_problem("/work/src/main.rs"), std::nullopt);
  for (const char* unsafe : {"/work/../etc/passwd", "//x", "/a/./b", "/a/"}) {
    EXPECT_NE(workspace_path_problem(unsafe, PathRule::any_writer), std::nullopt) << unsafe;
  }
  EXPECT_NE(record_path_problem(kind::FileWrite{"/a/../../x", "", 0}, PathRule::any_writer),
            std::nullopt);
}

TEST(TapePaths, EveryPathARecordNamesPassesTheGate) {
  EXPECT_EQ(record_path_problem(kind::FileRead{"in.txt", std::string(64, 'a'), 1}), std::nullopt);
  EXPECT_NE(record_path_problem(kind::FileRead{"../in.txt", "", 0}), std::nullopt);
  EXPECT_NE(record_path_problem(kind::FileWrite{"d/../../x", "", 0, true}), std::nullopt);
  EXPECT_NE(record_path_problem(kind::FileDelete{"/etc/passwd", true}), std::nullopt);
  EXPECT_NE(record_path_problem(extension::folder_made_record("../../tmp/escape-dir")),
            std::nullopt);
  EXPECT_EQ(record_path_problem(extension::folder_made_record("a/b")), std::nullopt);
  kind::ProcessSpawn spawn;
  spawn.program = "sh";
  for (const char* key : {".", "sub/dir", "/repo"}) {  // an absolute cwd is a key, never a place
    spawn.cwd = key;
    EXPECT_EQ(record_path_problem(spawn), std::nullopt) << key;
  }
  spawn.cwd = std::nullopt;
  EXPECT_EQ(record_path_problem(spawn), std::nullopt);
  spawn.cwd = "../..";
  const auto problem = record_path_problem(spawn);
  ASSERT_TRUE(problem.has_value());
  EXPECT_NE(problem->find("process_spawn cwd \"../..\" climbs out"), std::string::npos) << *problem;
  EXPECT_EQ(record_path_problem(kind::ClockRead{}), std::nullopt);
}

}  // namespace
}  // namespace tapedeck
