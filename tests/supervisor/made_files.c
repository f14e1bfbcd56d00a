// Files and folders a program makes for itself, as agents do: a temporary folder and files named
// by mkdtemp, mkstemp and mkstemps in the workspace and in /tmp (glibc draws their letters with
// its own system call), and a note it looks for before writing it, then reads back. Prints what
// it saw; a replay must print the same.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void note(const char* what) {
  FILE* file = fopen("note.txt", "r");
  char line[64] = "";
  if (file == NULL) {
    printf("%s: no note (%s)\n", what, strerror(errno));
    return;
  }
  if (fgets(line, sizeof line, file) == NULL) line[0] = '\0';
  fclose(file);
  printf("%s: %s", what, line);
}

int main(void) {
  char folder[] = "scratch-XXXXXX";
  printf("mkdtemp: %s\n", mkdtemp(folder) != NULL ? folder : strerror(errno));
  char file[] = "made-XXXXXX";
  const int fd = mkstemp(file);
  if (fd >= 0) {
    if (write(fd, "made\n", 5) != 5) return 1;
    close(fd);
  }
  printf("mkstemp: %s\n", fd >= 0 ? file : strerror(errno));
  char suffixed[] = "report-XXXXXX.txt";
  const int other = mkstemps(suffixed, 4);
  if (other >= 0) close(other);
  printf("mkstemps: %s\n", other >= 0 ? suffixed : strerror(errno));
  char outside[] = "/tmp/tapedeck-made-XXXXXX";
  const char* made = mkdtemp(outside);
  printf("mkdtemp in /tmp: %s\n", made != NULL ? outside + 5 : strerror(errno));
  if (made != NULL) rmdir(outside);
  char bad[] = "no-letters";
  printf("a template without XXXXXX: %s\n", mkdtemp(bad) == NULL ? strerror(errno) : bad);

  note("before writing");
  FILE* out = fopen("note.txt", "w");
  if (out == NULL) return 1;
  fputs("the plan: start small\n", out);
  fclose(out);
  note("after writing");
  return 0;
}
