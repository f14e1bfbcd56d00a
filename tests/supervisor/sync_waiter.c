/* Waits with a deadline on a semaphore and on condition variables, each timing out, then a
 * semaphore wait another thread ends: what run_replay.waits records and replays. Prints what
 * each wait answered, and how long they took on the program's clock. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static struct timespec after(clockid_t clock, long ms) {
  struct timespec at;
  clock_gettime(clock, &at);
  at.tv_sec += ms / 1000;
  at.tv_nsec += (ms % 1000) * 1000000L;
  if (at.tv_nsec >= 1000000000L) {
    at.tv_nsec -= 1000000000L;
    at.tv_sec += 1;
  }
  return at;
}

static const char* said(int error) {
  return error == ETIMEDOUT ? "timed out" : error == 0 ? "ended" : "failed";
}

static sem_t posted;

static void* post_soon(void* unused) {
  (void)unused;
  usleep(100 * 1000);
  sem_post(&posted);
  return NULL;
}

int main(void) {
  struct timespec started, deadline;
  clock_gettime(CLOCK_MONOTONIC, &started);
  sem_t never;
  sem_init(&never, 0, 0);
  deadline = after(CLOCK_REALTIME, 300);
  printf("sem_timedwait: %s\n", said(sem_timedwait(&never, &deadline) == 0 ? 0 : errno));
  deadline = after(CLOCK_MONOTONIC, 200);
  printf("sem_clockwait: %s\n",
         said(sem_clockwait(&never, CLOCK_MONOTONIC, &deadline) == 0 ? 0 : errno));

  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t on_realtime = PTHREAD_COND_INITIALIZER, on_monotonic;
  pthread_condattr_t monotonic;
  pthread_condattr_init(&monotonic);
  pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
  pthread_cond_init(&on_monotonic, &monotonic);
  pthread_mutex_lock(&mutex);
  deadline = after(CLOCK_REALTIME, 250);
  printf("pthread_cond_timedwait (realtime): %s\n",
         said(pthread_cond_timedwait(&on_realtime, &mutex, &deadline)));
  deadline = after(CLOCK_MONOTONIC, 150);
  printf("pthread_cond_timedwait (monotonic): %s\n",
         said(pthread_cond_timedwait(&on_monotonic, &mutex, &deadline)));
  deadline = after(CLOCK_MONOTONIC, 100);
  printf("pthread_cond_clockwait: %s\n",
         said(pthread_cond_clockwait(&on_realtime, &mutex, CLOCK_MONOTONIC, &deadline)));
  pthread_mutex_unlock(&mutex);

  sem_init(&posted, 0, 0);
  pthread_t poster;
  pthread_create(&poster, NULL, post_soon, NULL);
  deadline = after(CLOCK_REALTIME, 5000);
  printf("sem_timedwait a thread posts to: %s\n",
         said(sem_timedwait(&posted, &deadline) == 0 ? 0 : errno));
  pthread_join(poster, NULL);

  struct timespec ended;
  clock_gettime(CLOCK_MONOTONIC, &ended);
  long ms = (ended.tv_sec - started.tv_sec) * 1000 + (ended.tv_nsec - started.tv_nsec) / 1000000;
  printf("waited about %.1f s\n", (double)((ms + 50) / 100) / 10);
  return 0;
}
