// Starting the root program. fork(), then in the child, in this order and only with
// async-signal-safe calls (the supervisor has threads): a private view of the workspace (a mount
// namespace, a user namespace when not root, an overlayfs over the workspace), a private home
// and /tmp, the system-call floor, then a pause until the supervisor is ready to serve the tree,
// then exec (stopped there once by ptrace when the floor has the whole reach, so that the vDSO
// can be hidden).
//
// The child hands back what the supervisor needs to serve it (the view's root, the floor's
// notification descriptor) before the program runs, so that the program's first call is served.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>

#include "floor/floor.hpp"
#include "preload/exit_status.hpp"
#include "supervisor/private_world.hpp"

namespace tapedeck::supervisor {

struct RootPlan {
  const char* program = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  std::string cwd;  // where the program starts (as the view sees it)
  // A private view at `workspace` in a mount namespace: `bind_source` bind-mounted when set,
  // else an overlayfs with `overlay_options` (or `overlay_fallback` where the kernel refuses).
  bool overlay = false;
  std::string workspace;
  std::string overlay_options;
  std::string overlay_fallback;
  std::string bind_source;
  // A private /tmp and home (overlayfs over the host's, what each keeps mounted back over it),
  // in a mount namespace of the program's own. The home only with `overlay`.
  const PrivateLayer* temp = nullptr;
  const PrivateLayer* home = nullptr;
  const floor::Filter* floor = nullptr;  // null: no floor; Reach::whole hides the vDSO
  // The program runs as pid 2 of a pid namespace of its own, under an init of tapedeck's.
  bool pid_namespace = false;
  floor::ExecStopPlan exec_stop;  // Reach::whole: what is done at the program's exec stop
  // The program's stdout and stderr (the output relays); -1: this process's own.
  int stdout_fd = -1;
  int stderr_fd = -1;
};

// Why a step of the set-up failed: the caller may start again without it.
struct RootSetupFailure {
  enum class Step { overlay, floor, pid_namespace, temp, home } step = Step::overlay;
  std::string why;
};

class PreparedRoot {
 public:
  // Forks and runs the set-up; nullopt (and `failure`) when a step failed (the child is reaped).
  static std::optional<PreparedRoot> prepare(const RootPlan& plan, RootSetupFailure& failure);
  PreparedRoot(PreparedRoot&& other) noexcept;
  PreparedRoot& operator=(PreparedRoot&&) = delete;
  ~PreparedRoot();  // a root never let go is killed and reaped

  pid_t pid() const { return pid_; }
  // What stands for the program's tree (signals, stopping it): its init when it runs in a pid
  // namespace (killing it ends the namespace), else the program itself. Known after go().
  pid_t tree_pid() const { return init_pid_ > 0 ? init_pid_ : pid_; }
  // The overlay's root and the floor's notifications (-1 when not asked for); the caller owns
  // them once taken.
  int take_view() { return std::exchange(view_fd_, -1); }
  // The private /tmp's root (-1: /tmp is the host's).
  int take_temp() { return std::exchange(temp_fd_, -1); }
  int take_floor() { return std::exchange(floor_fd_, -1); }
  double setup_ms() const { return setup_ms_; }
  // Lets the program start. Throws when exec failed (the child is reaped then).
  void go();
  // Why the vDSO could not be hidden from the program or its clock patched (empty when it was,
  // or not asked).
  std::string vdso_failure() const { return floor::describe(exec_stop_report_, exec_stop_); }
  // Why the program's pid namespace has the host's /proc (empty when it has its own).
  const std::string& proc_failure() const { return proc_failure_; }

 private:
  PreparedRoot() = default;
  pid_t pid_ = -1;
  pid_t init_pid_ = -1;
  int channel_ = -1;
  int view_fd_ = -1;
  int temp_fd_ = -1;
  int floor_fd_ = -1;
  double setup_ms_ = 0;
  bool hide_vdso_ = false;
  floor::ExecStopPlan exec_stop_;
  floor::ExecStopReport exec_stop_report_;
  std::string proc_failure_;
  std::string program_;
};

}  // namespace tapedeck::supervisor
