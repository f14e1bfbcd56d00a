/* Draws randomness: `urandom MB` reads MB megabytes from /dev/urandom in 4 KiB reads;
 * `getrandom N` calls getrandom N times for 16 bytes. The entropy benchmark's program. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const long count = atol(argv[2]);
  unsigned char buffer[4096];
  unsigned long sum = 0;
  if (strcmp(argv[1], "urandom") == 0) {
    const int fd = open("/dev/urandom", O_RDONLY);
    for (long i = 0; i < count * 256; ++i) {
      if (read(fd, buffer, sizeof buffer) != (ssize_t)sizeof buffer) return 1;
      sum += buffer[0];
    }
    close(fd);
  } else {
    for (long i = 0; i < count; ++i) {
      if (getrandom(buffer, 16, 0) != 16) return 1;
      sum += buffer[0];
    }
  }
  printf("%lu\n", sum);
  return 0;
}
