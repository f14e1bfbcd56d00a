/* Draws randomness every way a C program can and prints it (the entropy end-to-end test runs it
 * recorded and replayed): getrandom, getentropy, arc4random*, syscall(SYS_getrandom), a read of
 * /dev/urandom and an fread of it, before and after a fork (the child draws its own bytes). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(const char* what, const unsigned char* bytes, size_t size) {
  printf("%s ", what);
  for (size_t i = 0; i < size; ++i) printf("%02x", bytes[i]);
  printf("\n");
}

int main(void) {
  unsigned char bytes[16];
  getrandom(bytes, sizeof bytes, 0);
  show("getrandom", bytes, sizeof bytes);
  getentropy(bytes, sizeof bytes);
  show("getentropy", bytes, sizeof bytes);
  printf("arc4random %08x %u\n", arc4random(), arc4random_uniform(1000));
  arc4random_buf(bytes, sizeof bytes);
  show("arc4random_buf", bytes, sizeof bytes);
  syscall(SYS_getrandom, bytes, sizeof bytes, 0);
  show("syscall", bytes, sizeof bytes);
  const int fd = open("/dev/urandom", O_RDONLY);
  if (read(fd, bytes, sizeof bytes) != (ssize_t)sizeof bytes) return 1;
  close(fd);
  show("read /dev/urandom", bytes, sizeof bytes);
  FILE* file = fopen("/dev/urandom", "rb");
  if (file == NULL || fread(bytes, 1, sizeof bytes, file) != sizeof bytes) return 1;
  fclose(file);
  show("fread /dev/urandom", bytes, sizeof bytes);
  fflush(stdout);
  const pid_t child = fork();
  if (child == 0) {
    getrandom(bytes, sizeof bytes, 0);
    show("child", bytes, sizeof bytes);
    fflush(stdout);
    _exit(0);
  }
  waitpid(child, NULL, 0);
  getrandom(bytes, sizeof bytes, 0);
  show("parent", bytes, sizeof bytes);
  return 0;
}
