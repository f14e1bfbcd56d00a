/* Reads the monotonic clock N times (default 1,000,000): the clock overhead benchmark's program. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  long calls = argc > 1 ? atol(argv[1]) : 1000000;
  long long sum = 0;
  struct timespec now;
  for (long i = 0; i < calls; ++i) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    sum += now.tv_nsec & 1;
  }
  printf("%ld clock reads (%lld odd)\n", calls, sum);
  return 0;
}
