/* Sleeps by other names, as older C code sleeps: poll, ppoll, select and pselect on no
 * descriptor, a second each, with the clock read around each. Built statically, the floor
 * serves it: the recording takes 4 s, a replay prints the same times at once. A wait on a
 * descriptor that is ready at once (a pipe with a byte in it) ends at once in both. */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int main(void) {
  const long long start = now_ms();
  int result = poll(NULL, 0, 1000);
  printf("poll %d after %lld ms\n", result, now_ms() - start);
  struct timespec span = {1, 0};
  result = ppoll(NULL, 0, &span, NULL);
  printf("ppoll %d after %lld ms, left %lld.%09ld s\n", result, now_ms() - start,
         (long long)span.tv_sec, span.tv_nsec);
  struct timeval interval = {1, 0};
  result = select(0, NULL, NULL, NULL, &interval);
  printf("select %d after %lld ms, left %lld.%06ld s\n", result, now_ms() - start,
         (long long)interval.tv_sec, (long)interval.tv_usec);
  span = (struct timespec){1, 0};
  result = pselect(0, NULL, NULL, NULL, &span, NULL);
  printf("pselect %d after %lld ms\n", result, now_ms() - start);
  int ends[2];
  if (pipe(ends) != 0 || write(ends[1], "x", 1) != 1) return 1;
  struct pollfd ready = {ends[0], POLLIN, 0};
  result = poll(&ready, 1, 5000);
  printf("poll on a ready pipe %d (revents %d) after %lld ms\n", result, ready.revents,
         now_ms() - start);
  return 0;
}
