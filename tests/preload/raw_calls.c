// An agent that reaches the kernel with its own syscall instruction, as Bun and Zig programs do:
// it writes a file, reads one, draws randomness, reads the clock, sleeps, makes and removes a
// folder and renames its file, none of it through libc's entry points. Like Bun, it also names a
// file through a descriptor of its folder ("/proc/self/fd/N/name"). It also sets its own
// SIGSYS handler, as Bun's crash handler does, and raises SIGSYS once: its handler must run.
// Built with THROUGH_LIBC it makes the same calls through libc's syscall(3) instead.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

#ifdef THROUGH_LIBC
// The same calls made through libc's syscall(3), as libuv (Node) closes its files.
#include <unistd.h>
static long raw(long number, long a, long b, long c, long d) {
  const long result = syscall(number, a, b, c, d);
  return result == -1 ? -errno : result;
}
#else
static long raw(long number, long a, long b, long c, long d) {
  long result;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall"
                   : "=a"(result)
                   : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return result;
}
#endif

static volatile sig_atomic_t own_handler_ran = 0;
static void on_sigsys(int signal_number) {
  (void)signal_number;
  own_handler_ran = 1;
}

int main(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_sigsys;
  sigaction(SIGSYS, &action, NULL);

  const char text[] = "written raw\n";
  long fd = raw(SYS_openat, AT_FDCWD, (long)"out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  raw(SYS_write, fd, (long)text, sizeof text - 1, 0);
  raw(SYS_close, fd, 0, 0, 0);

  char input[64] = {0};
  fd = raw(SYS_open, (long)"in.txt", O_RDONLY, 0, 0);
  const long got = raw(SYS_read, fd, (long)input, sizeof input - 1, 0);
  raw(SYS_close, fd, 0, 0, 0);

  unsigned char random[8];
  raw(SYS_getrandom, (long)random, sizeof random, 0, 0);
  struct timespec before, after;
  raw(SYS_clock_gettime, CLOCK_REALTIME, (long)&before, 0, 0);
  struct timespec nap = {0, 300 * 1000 * 1000};
  raw(SYS_nanosleep, (long)&nap, 0, 0, 0);
  raw(SYS_clock_gettime, CLOCK_REALTIME, (long)&after, 0, 0);

  const long made = raw(SYS_mkdir, (long)"scratch", 0755, 0, 0);
  const long removed = raw(SYS_rmdir, (long)"scratch", 0, 0, 0);
  const long moved = raw(SYS_rename, (long)"out.txt", (long)"moved.txt", 0, 0);
  const long missing = raw(SYS_openat, AT_FDCWD, (long)"no-such-file", O_RDONLY, 0);

  // Through the folder's descriptor, as Bun writes a file: a temporary one, then renamed.
  const long folder = raw(SYS_openat, AT_FDCWD, (long)".", O_RDONLY | O_DIRECTORY, 0);
  char temporary[64], final_name[64];
  snprintf(temporary, sizeof temporary, "/proc/self/fd/%ld/via-fd.txt.tmp", folder);
  snprintf(final_name, sizeof final_name, "/proc/self/fd/%ld/via-fd.txt", folder);
  fd = raw(SYS_openat, AT_FDCWD, (long)temporary, O_WRONLY | O_CREAT | O_EXCL, 0644);
  raw(SYS_write, fd, (long)text, sizeof text - 1, 0);
  raw(SYS_close, fd, 0, 0, 0);
  raw(SYS_rename, (long)temporary, (long)final_name, 0, 0);
  raw(SYS_close, folder, 0, 0, 0);

  raise(SIGSYS);
  struct sigaction current;
  sigaction(SIGSYS, NULL, &current);

  printf("read %ld bytes: %s", got, input);
  printf("random %02x%02x%02x%02x%02x%02x%02x%02x\n", random[0], random[1], random[2], random[3],
         random[4], random[5], random[6], random[7]);
  printf("clock %lld.%03ld, then %lld.%03ld\n", (long long)before.tv_sec, before.tv_nsec / 1000000,
         (long long)after.tv_sec, after.tv_nsec / 1000000);
  printf("mkdir %ld, rmdir %ld, rename %ld, open of a missing file %ld\n", made, removed, moved,
         missing);
  printf("own SIGSYS handler ran: %s; sigaction reports it: %s\n", own_handler_ran ? "yes" : "no",
         current.sa_handler == on_sigsys ? "yes" : "no");
  return 0;
}
