// A program's signal handlers under the preload, which puts one of its own in front of each: the
// program's handler runs with the arguments the kernel gave, sigaction and signal() report the
// program's own handler (and SIG_DFL once SA_RESETHAND has reset it), and a sleep that a handled
// signal came just before is cut short as it would have been natively a moment later (under the
// preload; natively this program sleeps the 3 s out, so the test does not run that part natively).
// Usage: signal_handlers [--sleep]
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t plain_ran;
static volatile sig_atomic_t with_info_value = -1;
static volatile sig_atomic_t reset_ran;

static void on_plain(int signal_number) {
  plain_ran = signal_number;
}

static void on_with_info(int signal_number, siginfo_t* info, void* context) {
  (void)context;
  if (signal_number == SIGUSR2 && info->si_signo == SIGUSR2)
    with_info_value = info->si_value.sival_int;
}

static void on_reset(int signal_number) {
  reset_ran = signal_number;
}

static const char* yes(int ok) {
  return ok ? "yes" : "no";
}

int main(int argc, char** argv) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_plain;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR1, &action, NULL);
  struct sigaction reported;
  sigaction(SIGUSR1, NULL, &reported);
  printf("sigaction reports the program's handler: %s\n",
         yes(reported.sa_handler == on_plain && (reported.sa_flags & SA_SIGINFO) == 0));
  raise(SIGUSR1);
  printf("plain handler ran: %s\n", yes(plain_ran == SIGUSR1));

  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_with_info;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR2, &action, NULL);
  union sigval value = {.sival_int = 42};
  sigqueue(getpid(), SIGUSR2, value);
  printf("SA_SIGINFO handler got the queued value: %s\n", yes(with_info_value == 42));

  sighandler_t before = signal(SIGHUP, on_reset);
  sighandler_t replaced = signal(SIGHUP, SIG_IGN);
  printf("signal() reports the handler it replaces: %s\n",
         yes(before == SIG_DFL && replaced == on_reset));

  memset(&action, 0, sizeof action);
  action.sa_handler = on_reset;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGWINCH, &action, NULL);
  raise(SIGWINCH);
  sigaction(SIGWINCH, NULL, &reported);
  printf("SA_RESETHAND: ran once, then reported default: %s\n",
         yes(reset_ran == SIGWINCH && reported.sa_handler == SIG_DFL));

  if (argc > 1 && strcmp(argv[1], "--sleep") == 0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    raise(SIGUSR1);  // handled between the clock read and the sleep
    struct timespec asked = {3, 0}, left = {0, 0};
    const int result = nanosleep(&asked, &left);
    printf("a sleep just after a handled signal: %s, %ld s left\n",
           result == -1 && errno == EINTR ? "interrupted" : "slept", (long)left.tv_sec);
    clock_gettime(CLOCK_MONOTONIC, &now);
    asked.tv_sec = 0;
    asked.tv_nsec = 20 * 1000 * 1000;
    printf("a sleep with no signal: %s\n", nanosleep(&asked, NULL) == 0 ? "slept" : "interrupted");
  }
  return 0;
}
