/* A static program whose file writes a test lets escape the system-call floor on purpose
 * (TAPEDECK_TEST_FLOOR_HOLE=open,openat): tests/floor/served_test.sh checks that it is named in a
 * warning and that its replay still leaves the workspace untouched. */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  const int fd = open("escaped.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, "escaped\n", 8) != 8 || close(fd) != 0) {
    perror("escaped.txt");
    return 1;
  }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  printf("wrote escaped.txt at %ld\n", (long)now.tv_sec);
  return 0;
}
