/* An example agent in C that reaches every effect through libc, the ways C programs do:
 * clock_gettime, gettimeofday and time; nanosleep and usleep; open/read, fopen/fprintf and
 * unlink in its workspace; fork+execvp, posix_spawnp, system() and popen(); and a connect()
 * to the internet, which the testbench denies. Run it in its workspace folder. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(void) {
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  struct timeval now;
  gettimeofday(&now, NULL);
  printf("started at %ld (time() says %ld)\n", (long)now.tv_sec, (long)time(NULL));

  char tasks[4096] = {0};
  int fd = open("tasks.txt", O_RDONLY);
  ssize_t got = fd >= 0 ? read(fd, tasks, sizeof tasks - 1) : -1;
  if (fd >= 0) close(fd);
  printf("tasks.txt: %zd bytes, first line: %.*s\n", got, (int)strcspn(tasks, "\n"), tasks);

  struct timespec nap = {0, 250 * 1000 * 1000};
  nanosleep(&nap, NULL);
  usleep(250 * 1000);

  fflush(stdout); /* children write to the same stdout */
  pid_t child = fork();
  if (child == 0) {
    char* argv[] = {"echo", "hello from a forked child", NULL};
    execvp("echo", argv);
    _exit(127);
  }
  printf("fork+execvp exit %d\n", wait_for(child));

  pid_t spawned;
  char* argv[] = {"uname", "-s", NULL};
  fflush(stdout);
  if (posix_spawnp(&spawned, "uname", NULL, NULL, argv, environ) == 0) {
    printf("posix_spawnp exit %d\n", wait_for(spawned));
  }
  fflush(stdout);
  printf("system exit %d\n", WEXITSTATUS(system("date -u +%Y >/dev/null; echo from system")));
  FILE* pipe = popen("wc -l < tasks.txt", "r");
  char line[64] = {0};
  if (pipe != NULL && fgets(line, sizeof line, pipe) != NULL) printf("popen says %s", line);
  if (pipe != NULL) pclose(pipe);

  FILE* out = fopen("c_report.txt", "w");
  if (out != NULL) {
    fprintf(out, "report written at %ld\n", (long)now.tv_sec);
    fclose(out);
  }
  printf("unlink scratch.tmp: %s\n", unlink("scratch.tmp") == 0 ? "done" : strerror(errno));

  int sock = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in internet = {0};
  internet.sin_family = AF_INET;
  internet.sin_port = htons(443);
  inet_pton(AF_INET, "192.0.2.1", &internet.sin_addr); /* TEST-NET-1: never routed */
  int connected = connect(sock, (struct sockaddr*)&internet, sizeof internet);
  printf("connect to 192.0.2.1:443: %s\n", connected == 0 ? "connected" : strerror(errno));
  close(sock);

  clock_gettime(CLOCK_MONOTONIC, &end);
  long elapsed = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
  printf("took %ld ms\n", elapsed);
  return 3; /* an exit code of its own, which tapedeck passes on */
}
