/* An agent the preload library cannot reach: built statically (musl, or glibc -static), it
 * reads the clock, sleeps a second, reads a workspace file, runs `date +%s%N` as a subprocess,
 * draws randomness (getrandom, AT_RANDOM), calls the LLM over a raw HTTP connection to
 * OPENAI_BASE_URL and writes a file (renamed into place, a scratch file deleted), every effect
 * through the system calls themselves. Everything it prints must come out the same on replay. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

/* Runs `date +%s%N` (posix_spawnp: a vfork child that execs) and keeps what it printed. */
static int run_date(char* out, size_t size) {
  int pipe_ends[2];
  if (pipe(pipe_ends) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_ends[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_ends[0]);
  char* argv[] = {"date", "+%s%N", NULL};
  pid_t child;
  if (posix_spawnp(&child, "date", &actions, NULL, argv, environ) != 0) return -1;
  close(pipe_ends[1]);
  size_t have = 0;
  ssize_t got;
  while (have < size - 1 && (got = read(pipe_ends[0], out + have, size - 1 - have)) > 0) {
    have += (size_t)got;
  }
  out[have] = 0;
  out[strcspn(out, "\n")] = 0;
  close(pipe_ends[0]);
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static long ms_of(const struct timespec* ts) {
  return ts->tv_sec * 1000L + ts->tv_nsec / 1000000;
}

/* POSTs one chat completion to OPENAI_BASE_URL (http://HOST:PORT/v1) and keeps the answer's
 * "content" in `answer`. */
static int ask_llm(const char* prompt, char* answer, size_t size) {
  const char* base = getenv("OPENAI_BASE_URL");
  const char* key = getenv("OPENAI_API_KEY");
  char host[64] = {0};
  int port = 0;
  if (base == NULL || key == NULL || sscanf(base, "http://%63[^:]:%d", host, &port) != 2) return -1;
  int sock = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address = {0};
  address.sin_family = AF_INET;
  address.sin_port = htons((unsigned short)port);
  inet_pton(AF_INET, host, &address.sin_addr);
  if (connect(sock, (struct sockaddr*)&address, sizeof address) != 0) return -1;
  char body[512];
  int body_size = snprintf(body, sizeof body,
                           "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
                           "\"content\":\"%s\"}]}",
                           prompt);
  char request[2048];
  int request_size = snprintf(request, sizeof request,
                              "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
                              "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                              host, port, key, body_size, body);
  if (write(sock, request, (size_t)request_size) != request_size) return -1;
  static char response[65536];
  size_t have = 0;
  ssize_t got;
  while (have < sizeof response - 1 &&
         (got = read(sock, response + have, sizeof response - 1 - have)) > 0) {
    have += (size_t)got;
  }
  response[have] = 0;
  close(sock);
  const char* content = strstr(response, "\"content\"");
  if (content == NULL) return -1;
  content = strchr(content + 9, '"');
  if (content == NULL) return -1;
  ++content;
  size_t length = strcspn(content, "\"");
  if (length >= size) length = size - 1;
  memcpy(answer, content, length);
  answer[length] = 0;
  return 0;
}

int main(void) {
  struct timespec start, end, wall;
  clock_gettime(CLOCK_MONOTONIC, &start);
  clock_gettime(CLOCK_REALTIME, &wall);
  struct timeval now;
  gettimeofday(&now, NULL);
  printf("wall %ld ms, gettimeofday %ld s, time %ld\n", ms_of(&wall), (long)now.tv_sec,
         (long)time(NULL));

  unsigned char drawn[8], startup[16];
  getrandom(drawn, sizeof drawn, 0);
  memcpy(startup, (const void*)getauxval(AT_RANDOM), sizeof startup);
  printf("random %02x%02x%02x%02x, AT_RANDOM %02x%02x%02x%02x\n", drawn[0], drawn[1], drawn[2],
         drawn[3], startup[0], startup[1], startup[2], startup[3]);

  char tasks[4096] = {0};
  int fd = open("tasks.txt", O_RDONLY);
  ssize_t got = fd >= 0 ? read(fd, tasks, sizeof tasks - 1) : -1;
  if (fd >= 0) close(fd);
  printf("tasks.txt: %zd bytes, first line: %.*s\n", got, (int)strcspn(tasks, "\n"), tasks);

  sleep(1);
  struct timespec after_sleep;
  clock_gettime(CLOCK_MONOTONIC, &after_sleep);
  printf("slept %ld ms\n", ms_of(&after_sleep) - ms_of(&start));

  char date[64];
  printf("date exit %d: %s\n", run_date(date, sizeof date), date);

  char answer[1024] = {0};
  if (ask_llm("Summarise the tasks", answer, sizeof answer) != 0) {
    printf("the LLM call failed\n");
    return 1;
  }
  printf("llm: %s\n", answer);

  /* Written the careful way: a temporary file renamed into place; the scratch file deleted. */
  FILE* out = fopen("output.tmp", "w");
  if (out == NULL) return 1;
  fprintf(out, "answer at %ld: %s\n", ms_of(&wall), answer);
  fclose(out);
  if (rename("output.tmp", "output.txt") != 0) return 1;
  printf("unlink scratch.tmp: %d\n", unlink("scratch.tmp"));

  clock_gettime(CLOCK_MONOTONIC, &end);
  printf("took %ld ms\n", ms_of(&end) - ms_of(&start));
  return 0;
}
