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
      {"/etc/escape.txt", "is absolute"},
      {"/tmpx/escape.txt", "is absolute"},
      {"/tmp/", "is absolute"},
      {"/tmp", "is absolute"},
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

TEST(TapePaths, APrivateTempOrHomePathIsItsPrefixThenARelativeOne) {
  // What a tool wrote in the run's own /tmp, and a home file as the run found it: applied beneath
  // the replay's own /tmp and home, never the host's.
  for (const std::string prefix : {"/tmp/", "/~/"}) {
    for (const char* safe : {"x", "agent-1/out.txt", "..a"}) {
      EXPECT_EQ(workspace_path_problem(prefix + safe), std::nullopt) << prefix + safe;
    }
    const std::pair<std::string, std::string> unsafe[] = {
        {"../etc/passwd", "climbs out"}, {"a/../../x", "climbs out"},   {"..", "climbs out"},
        {"/x", "not in normal form"},    {"./x", "not in normal form"}, {"", "is absolute"},
    };
    for (const auto& [rest, why] : unsafe) {
      const auto problem = workspace_path_problem(prefix + rest);
      ASSERT_TRUE(problem.has_value()) << prefix + rest;
      EXPECT_NE(problem->find(why), std::string::npos) << *problem;
    }
  }
  EXPECT_NE(workspace_path_problem("/~"), std::nullopt);
  EXPECT_NE(workspace_path_problem("/~x/y"), std::nullopt);
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

TEST(TapePaths, TreeChangesReadBackAsWritten) {
  using TreeChange = extension::TreeChange;
  const std::vector<TreeChange> changes = {
      {TreeChange::Kind::folder_made, "a/b", 0750, ""},
      {TreeChange::Kind::folder_made, "old", std::nullopt, ""},
      {TreeChange::Kind::folder_removed, "build", std::nullopt, ""},
      {TreeChange::Kind::symlink_made, "link", std::nullopt, "../s \"q\".txt"},
      {TreeChange::Kind::hard_link_made, "hard", std::nullopt, "a/b/f.txt"},
      {TreeChange::Kind::mode_set, "run.sh", 0755, ""},
  };
  for (const TreeChange& change : changes) {
    const kind::Unknown record = extension::tree_change_record(change);
    const auto back = extension::tree_change(record);
    ASSERT_TRUE(back.has_value()) << record.raw_json;
    EXPECT_EQ(back->kind, change.kind) << record.raw_json;
    EXPECT_EQ(back->path, change.path);
    EXPECT_EQ(back->mode, change.mode);
    EXPECT_EQ(back->other, change.other);
  }
  EXPECT_EQ(extension::tree_change(extension::entropy_record(std::string(64, 'a'))), std::nullopt);
  EXPECT_EQ(extension::tree_change(
                kind::Unknown{"mode_set", R"({"kind":"mode_set","path":"x","mode":4096})"}),
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
  using TreeChange = extension::TreeChange;
  const auto tree = [](TreeChange::Kind kind, std::string path, std::optional<uint32_t> mode,
                       std::string other) {
    return record_path_problem(extension::tree_change_record({kind, path, mode, other}));
  };
  EXPECT_NE(tree(TreeChange::Kind::folder_removed, "../..", std::nullopt, ""), std::nullopt);
  EXPECT_NE(tree(TreeChange::Kind::mode_set, "/etc/shadow", 0777, ""), std::nullopt);
  EXPECT_NE(tree(TreeChange::Kind::hard_link_made, "x", std::nullopt, "../../etc/passwd"),
            std::nullopt);
  EXPECT_EQ(tree(TreeChange::Kind::hard_link_made, "x", std::nullopt, "a/b"), std::nullopt);
  // A link may point anywhere: it is made inside the view, and nothing the replay writes
  // follows one.
  EXPECT_EQ(tree(TreeChange::Kind::symlink_made, "x", std::nullopt, "/etc"), std::nullopt);
  EXPECT_NE(tree(TreeChange::Kind::symlink_made, "x", std::nullopt, std::string("a\0b", 3)),
            std::nullopt);
  EXPECT_NE(tree(TreeChange::Kind::symlink_made, "../x", std::nullopt, "a"), std::nullopt);
  // A change of this family that does not parse is refused, not let through unread.
  EXPECT_NE(record_path_problem(kind::Unknown{"mode_set", R"({"kind":"mode_set","path":"x"})"}),
            std::nullopt);
  EXPECT_NE(record_path_problem(
                kind::Unknown{"folder_made", R"({"kind":"folder_made","path":"x","mode":-1})"}),
            std::nullopt);
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
