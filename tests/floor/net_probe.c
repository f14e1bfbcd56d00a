/* What the floor's end-to-end test runs, linked dynamically and statically: each mode makes its
 * system call directly (syscall(2)), so no libc hook stands between it and the floor.
 *   net_probe connect PORT      a TCP connect to 127.0.0.1:PORT; prints "connected" or the error
 *   net_probe io_uring          io_uring_setup; prints "io_uring: ok" or the error
 *   net_probe write FILE TEXT   writes TEXT into FILE (a program the preload does not reach) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "connect") == 0) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)atoi(argv[2]));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const long result = syscall(SYS_connect, fd, &address, sizeof address);
    printf("connect: %s\n", result == 0 ? "connected" : strerror(errno));
    return result == 0 ? 0 : 1;
  }
  if (argc == 2 && strcmp(argv[1], "io_uring") == 0) {
    const long result = syscall(SYS_io_uring_setup, 8, NULL);
    printf("io_uring: %s\n", result >= 0 ? "ok" : strerror(errno));
    return result >= 0 ? 0 : 1;
  }
  if (argc == 4 && strcmp(argv[1], "write") == 0) {
    const int fd = (int)syscall(SYS_openat, AT_FDCWD, argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const size_t size = strlen(argv[3]);
    const int ok = fd >= 0 && syscall(SYS_write, fd, argv[3], size) == (long)size;
    printf("write: %s\n", ok ? "written" : strerror(errno));
    return ok ? 0 : 1;
  }
  fprintf(stderr, "usage: net_probe connect PORT | io_uring | write FILE TEXT\n");
  return 2;
}
