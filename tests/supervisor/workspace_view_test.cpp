// The view's own wall: whatever path it is handed (the gate in tape_paths.hpp is the first), a
// write, delete or folder made by the supervisor stays beneath the view and follows no link.
#include "supervisor/workspace_view.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tapedeck::supervisor {
namespace {

namespace fs = std::filesystem;

class ViewFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tapedeck-view-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    base_ = pattern;
    fs::create_directories(base_ / "ws");
    fs::create_directories(base_ / "canary");
    std::ofstream(base_ / "canary" / "keep.txt") << "canary";
    std::ofstream(base_ / "ws" / "in.txt") << "workspace";
    view_ = std::make_unique<WorkspaceView>(base_ / "ws", base_ / "scratch");
    view_->make_copy();
    // Links a program of the tree could have made in the view.
    fs::create_directory_symlink("/", view_->copy_root() / "root");
    fs::create_directory_symlink(base_ / "canary", view_->copy_root() / "canary");
    fs::create_symlink(base_ / "canary" / "keep.txt", view_->copy_root() / "keep.txt");
  }
  void TearDown() override { fs::remove_all(base_); }
  // Everything outside the view, as it is now.
  std::string outside() const {
    std::string listing;
    for (const auto& entry : fs::recursive_directory_iterator(base_)) {
      if (entry.path().string().starts_with(view_->copy_root().string())) continue;
      listing += entry.path().string() + "\n";
    }
    std::ifstream kept(base_ / "canary" / "keep.txt");
    return listing + std::string(std::istreambuf_iterator<char>(kept), {});
  }
  fs::path base_;
  std::unique_ptr<WorkspaceView> view_;
};

TEST_F(ViewFixture, WritesStayBeneathTheViewAndFollowNoLink) {
  const std::string before = outside();
  for (const char* path :
       {"../../canary/keep.txt", "../x.txt", "a/../../x.txt", "/tmp/x.txt",
        "root/tmp/tapedeck-escape.txt", "canary/keep.txt", "..", "a/./b", "a//b"}) {
    EXPECT_FALSE(view_->write_file(path, "escaped")) << path;
    EXPECT_FALSE(view_->remove_file(path)) << path;
    EXPECT_FALSE(view_->make_folder(std::string(path) + "/made")) << path;
  }
  EXPECT_FALSE(view_->write_file("keep.txt", "escaped"));  // a link: not written through
  EXPECT_FALSE(view_->make_folder(".."));
  EXPECT_FALSE(view_->make_folder("../../canary2"));
  EXPECT_EQ(outside(), before);
  EXPECT_FALSE(fs::exists("/tmp/tapedeck-escape.txt"));
  EXPECT_TRUE(fs::is_symlink(view_->copy_root() / "keep.txt"));  // not replaced either
  // What is beneath it is written as asked.
  EXPECT_TRUE(view_->write_file("d/e/out.txt", "made"));
  EXPECT_TRUE(view_->make_folder("f/g"));
  EXPECT_TRUE(view_->remove_file("in.txt"));
  EXPECT_TRUE(fs::is_regular_file(view_->copy_root() / "d/e/out.txt"));
  EXPECT_TRUE(fs::is_directory(view_->copy_root() / "f/g"));
  EXPECT_FALSE(fs::exists(view_->copy_root() / "in.txt"));
  EXPECT_TRUE(fs::exists(base_ / "ws" / "in.txt"));  // the workspace itself untouched
}

}  // namespace
}  // namespace tapedeck::supervisor
