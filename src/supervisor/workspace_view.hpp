// The replay's view of the workspace.
//
// A replay must never change the workspace, and every file operation of the program must be
// answered exactly as a real file system answers it (O_EXCL, mkdir, chmod, symlinks, rmdir of a
// non-empty folder, listings while they change…). Emulating those answers call by call misses
// cases, so the kernel answers them, on a private view:
//
//   kernel_overlay  The replayed tree runs in a mount namespace of its own (inside a user
//                   namespace when tapedeck is not root) in which the workspace path is a private
//                   view: as root an overlayfs (lower the workspace, never written; upper a
//                   scratch folder of the run), unprivileged a private copy bind-mounted over it
//                   (an unprivileged overlayfs cannot rename a folder). Every process of the tree
//                   sees the view, whether the preload library reaches it or not; no process
//                   outside the tree does.
//   copy            Where the kernel gives no namespace (a container without user namespaces):
//                   the workspace is copied (`cp -a`) into the run folder, the program starts
//                   in the copy, and the preload library rewrites absolute workspace paths to
//                   it (and back where a path is read: getcwd, readlink, realpath). A program
//                   the preload does not reach sees the real workspace in this mode.
//
// The supervisor reads and writes the view at path(): a replay serves the bytes a recording
// read by putting them in the view just before the program opens the file.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace tapedeck::supervisor {

enum class Isolation { automatic, kernel_overlay, copy };

// "auto", "namespace" or "copy" (the CLI's --isolation); nullopt for anything else.
std::optional<Isolation> parse_isolation(std::string_view text);
const char* isolation_name(Isolation isolation);

// An overlayfs over `lower` whose upper and work folders are made in `scratch`: its options, with
// redirect_dir (folders rename: a kernel may default it to off, and only the initial user
// namespace may have it) and without (`fallback`). Nullopt, and why, when the folders cannot be
// made.
struct OverlayOptions {
  std::string options;
  std::string fallback;
};
std::optional<OverlayOptions> overlay_over(const std::filesystem::path& lower,
                                           const std::filesystem::path& scratch, std::string& why);

class WorkspaceView {
 public:
  // Holds nothing yet: the root launcher's set-up decides the kind (adopt_namespace(), or
  // make_copy() where no namespace can be had). `scratch` is a private folder of the run for the
  // overlay's upper and work folders, or the copy.
  WorkspaceView(std::filesystem::path workspace, std::filesystem::path scratch);
  ~WorkspaceView();
  WorkspaceView(const WorkspaceView&) = delete;
  WorkspaceView& operator=(const WorkspaceView&) = delete;

  // What the root launcher mounts over the workspace in the program's namespace: as root an
  // overlayfs (its options, and the same without redirect_dir for a kernel that refuses it);
  // otherwise a private copy (made here), bind-mounted, since an unprivileged overlayfs cannot
  // rename a folder. Nullopt, and why, when neither can be had.
  struct Layer {
    std::string overlay_options;
    std::string overlay_fallback;
    std::string bind_source;  // non-empty: bind-mount this copy
  };
  std::optional<Layer> namespace_layer(std::string& why);
  // The namespace is set up: `view_fd` is the workspace's root inside it (taken over).
  void adopt_namespace(int view_fd, double setup_ms);

  // Makes the copy (throws when it cannot). Then the program starts at translate(cwd) with
  // TAPEDECK_VIEW=copy_root() in its environment, so that the preload rewrites paths.
  void make_copy();

  Isolation kind() const { return kind_; }
  // What the view is made of: "overlayfs", "bind-mounted copy" or "copy" (empty: none yet).
  std::string layer() const;
  const std::filesystem::path& workspace() const { return workspace_; }
  // Where the copy is (copy mode only).
  const std::filesystem::path& copy_root() const { return copy_; }
  // A path as the replay sees it, for the supervisor to read: `relative` is inside the workspace.
  std::filesystem::path path(const std::string& relative) const;
  // Writes `bytes` as the whole of the view's file at `relative`, making its folders; deletes
  // it. Both stay beneath the view's root and follow no link (a link in the workspace must not
  // lead a write out of the view): false when the path is a link or cannot be written.
  bool write_file(const std::string& relative, std::string_view bytes,
                  std::optional<uint32_t> mode = std::nullopt) const;
  bool remove_file(const std::string& relative) const;
  // Makes the view's folder at `relative` and its parents (those already there are kept).
  bool make_folder(const std::string& relative) const;
  // What a tool did to the tree, made again, beneath the view and following no link: a file,
  // link or folder removed with everything in it; a symbolic link made (in place of a file or
  // link there); a second name given to a file; permission bits set (not through a link).
  bool remove_tree(const std::string& relative) const;
  bool make_symlink(const std::string& relative, const std::string& target) const;
  bool make_hard_link(const std::string& relative, const std::string& existing) const;
  bool set_mode(const std::string& relative, uint32_t mode) const;
  // A path of the supervisor's (the workspace or inside it) as the program starts there.
  std::filesystem::path translate(const std::filesystem::path& path) const;
  // The other way: a path the kernel gave a process of the tree, as the program names it.
  std::string untranslate(const std::string& path) const;
  // Time the namespace took to set up (namespace, mount, hand-over), for the summary.
  double setup_ms() const { return setup_ms_; }
  // Writes stay on the file system of the view's root: a folder mounted beneath it is not
  // entered. The private /tmp's view asks it, since what is mounted back beneath it (a trace's
  // folder) is the host's own.
  void keep_to_one_file_system();

 private:
  std::filesystem::path workspace_;
  std::filesystem::path scratch_;
  std::filesystem::path copy_;
  void copy_files();

  Isolation kind_ = Isolation::automatic;
  // The folder beneath which the view's `relative` names its file (made when `make`), or -1.
  int parent_of(const std::string& relative, std::string& name, bool make) const;

  // Whether `folder` (open) may be entered: on the root's file system, when writes keep to it.
  bool may_enter(int folder) const;

  int view_fd_ = -1;     // the view's root: the overlay's (opened inside the namespace), the copy's
  std::string fd_root_;  // "/proc/self/fd/N": the overlay as the supervisor reaches it
  std::optional<dev_t> root_device_;  // keep_to_one_file_system(): the root's
  double setup_ms_ = 0;
};

}  // namespace tapedeck::supervisor
