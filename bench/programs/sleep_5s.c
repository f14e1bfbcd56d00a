/* Sleeps 5 s in all, in ten naps, the way a polling agent does: the replay benchmark's program. */
#include <stdio.h>
#include <time.h>

int main(void) {
  struct timespec nap = {0, 500 * 1000 * 1000};
  for (int i = 0; i < 10; ++i) nanosleep(&nap, NULL);
  puts("slept 5 s");
  return 0;
}
