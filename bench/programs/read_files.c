/* Reads every file DIR/f0 … DIR/f{N-1} (default N 10,000) whole: the file overhead benchmark's
 * program. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const char* dir = argc > 1 ? argv[1] : ".";
  long files = argc > 2 ? atol(argv[2]) : 10000;
  long bytes = 0;
  char path[4096], buffer[4096];
  for (long i = 0; i < files; ++i) {
    snprintf(path, sizeof path, "%s/f%ld", dir, i);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
      perror(path);
      return 1;
    }
    ssize_t got;
    while ((got = read(fd, buffer, sizeof buffer)) > 0) bytes += got;
    close(fd);
  }
  printf("%ld files, %ld bytes\n", files, bytes);
  return 0;
}
