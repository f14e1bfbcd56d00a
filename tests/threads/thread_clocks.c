// Threads that read the clock and draw randomness side by side: the main thread and three it
// starts, each reading both clocks and drawing 8 random bytes between spins of its own length,
// and a forked child doing the same with two threads of its own, at the same time. Each prints
// what it read, relative to a read made before the fork, and its draws folded into one number.
// Which thread reads when differs on every run; a replay must still hand each its own values.
// With an argument, each started thread also writes a workspace file of its own every fourth
// read and reads it back (Bun's pool threads open and stat files while its main thread reads
// the clock): every thread's reads must still be its own, whichever thread's file comes first.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kMostThreads = 4, kReads = 40 };

static long long reads[kMostThreads][kReads][2];
static long long base[2];
static unsigned long long draws[kMostThreads];

static long long read_ms(clockid_t clock) {
  struct timespec now;
  clock_gettime(clock, &now);
  return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void spin(long turns) {
  for (volatile long i = 0; i < turns; ++i) {
  }
}

static int with_files;
static const char* process_name = "parent";

static void touch_file(long k, int i) {
  char name[32];
  snprintf(name, sizeof name, "%s-thread-%ld.txt", process_name, k);
  FILE* file = fopen(name, "w");
  if (file == NULL) return;
  fprintf(file, "%d\n", i);
  fclose(file);
  file = fopen(name, "r");
  if (file != NULL) fclose(file);
}

static void* reader(void* place) {
  const long k = (long)place;
  for (int i = 0; i < kReads; ++i) {
    if (with_files && k > 0 && i % 4 == 0) touch_file(k, i);
    reads[k][i][0] = read_ms(CLOCK_MONOTONIC);
    reads[k][i][1] = read_ms(CLOCK_REALTIME);
    unsigned long long drawn = 0;
    if (getrandom(&drawn, sizeof drawn, 0) == sizeof drawn) draws[k] = draws[k] * 31 + drawn;
    spin(250000 * (k + 1));
  }
  return NULL;
}

static void read_side_by_side(int threads) {
  pthread_t started[kMostThreads];
  for (long k = 1; k < threads; ++k) pthread_create(&started[k], NULL, reader, (void*)k);
  reader((void*)0);
  for (long k = 1; k < threads; ++k) pthread_join(started[k], NULL);
}

static void print_reads(const char* who, int threads) {
  for (int k = 0; k < threads; ++k) {
    printf("%s thread %d:", who, k);
    for (int i = 0; i < kReads; ++i) {
      printf(" %lld/%lld", reads[k][i][0] - base[0], reads[k][i][1] - base[1]);
    }
    printf("\n%s thread %d drew %016llx\n", who, k, draws[k]);
  }
  fflush(stdout);
}

int main(int argc, char** argv) {
  (void)argv;
  with_files = argc > 1;
  base[0] = read_ms(CLOCK_MONOTONIC);
  base[1] = read_ms(CLOCK_REALTIME);
  const pid_t child = fork();
  if (child == 0) {
    process_name = "child";
    read_side_by_side(3);
    print_reads("child", 3);
    _exit(0);
  }
  read_side_by_side(4);
  int status = 0;
  waitpid(child, &status, 0);  // (the child's lines first)
  print_reads("parent", 4);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
