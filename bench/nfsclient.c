/*
 * The timed client of bench/nfs.sh, run inside the benchmark VM on an NFS mount (built
 * statically with cc at bench time and put in the VM's initramfs). One phase per call, each
 * timed with CLOCK_MONOTONIC around its system calls only, printing one line:
 *   RESULT PHASE SECONDS OPS UNIT
 * Phases:
 *   write FILE MIB    writes MIB MiB in 1 MiB blocks, then fsync and close (all timed)
 *   dwrite FILE MIB   the same with O_DIRECT (no client page cache: each block goes out as
 *                     it is written)
 *   read FILE         reads FILE to its end in 1 MiB blocks (drop the caches before)
 *   create DIR N      creates N empty files DIR/fNNNNN (open O_CREAT|O_EXCL, close)
 *   stat DIR N        stat of each of them
 *   list DIR          readdir of DIR to its end (counts the entries)
 *   remove DIR N      unlink of each of them
 * Exit status 1, with the failing call on stderr, when any call fails.
 * Not here: checking what was read (the NFS client test does that), or any timing policy.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1 << 20)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void fail(const char *what, const char *path) {
  fprintf(stderr, "nfsclient: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static void name(char *buf, size_t len, const char *dir, long i) {
  snprintf(buf, len, "%s/f%05ld", dir, i);
}

int main(int argc, char **argv) {
  char path[4096];
  double t0, t;
  long n = 0, i;
  if (argc < 3) {
    fprintf(stderr, "usage: nfsclient write|dwrite|read|create|stat|list|remove PATH [N]\n");
    return 2;
  }
  const char *op = argv[1], *p = argv[2];
  if (argc > 3) n = atol(argv[3]);
  if (!strcmp(op, "write") || !strcmp(op, "dwrite")) {
    int direct = !strcmp(op, "dwrite") ? O_DIRECT : 0;
    char *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, BLOCK)) return 1;
    for (i = 0; i < BLOCK; i++) buf[i] = (char)(i * 131 + 7);
    t0 = now();
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | direct, 0644);
    if (fd < 0) fail("open", p);
    for (i = 0; i < n; i++) {
      buf[0] = (char)i; /* not all blocks alike */
      if (write(fd, buf, BLOCK) != BLOCK) fail("write", p);
    }
    if (fsync(fd) < 0) fail("fsync", p);
    if (close(fd) < 0) fail("close", p);
    t = now() - t0;
    printf("RESULT %s %.3f %.2f MB/s\n", op, t, n * (double)BLOCK / 1e6 / t);
  } else if (!strcmp(op, "read")) {
    char *buf = malloc(BLOCK);
    ssize_t r;
    double bytes = 0;
    if (!buf) return 1;
    t0 = now();
    int fd = open(p, O_RDONLY);
    if (fd < 0) fail("open", p);
    while ((r = read(fd, buf, BLOCK)) > 0) bytes += r;
    if (r < 0) fail("read", p);
    close(fd);
    t = now() - t0;
    printf("RESULT read %.3f %.2f MB/s\n", t, bytes / 1e6 / t);
  } else if (!strcmp(op, "create")) {
    t0 = now();
    for (i = 0; i < n; i++) {
      name(path, sizeof path, p, i);
      int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0) fail("create", path);
      if (close(fd) < 0) fail("close", path);
    }
    t = now() - t0;
    printf("RESULT create %.3f %.1f ops/s\n", t, n / t);
  } else if (!strcmp(op, "stat")) {
    struct stat st;
    t0 = now();
    for (i = 0; i < n; i++) {
      name(path, sizeof path, p, i);
      if (stat(path, &st) < 0) fail("stat", path);
    }
    t = now() - t0;
    printf("RESULT stat %.3f %.1f ops/s\n", t, n / t);
  } else if (!strcmp(op, "list")) {
    struct dirent *e;
    t0 = now();
    DIR *d = opendir(p);
    if (!d) fail("opendir", p);
    errno = 0;
    while ((e = readdir(d))) n++;
    if (errno) fail("readdir", p);
    closedir(d);
    t = now() - t0;
    printf("RESULT list %.3f %.1f entries/s\n", t, n / t);
  } else if (!strcmp(op, "remove")) {
    t0 = now();
    for (i = 0; i < n; i++) {
      name(path, sizeof path, p, i);
      if (unlink(path) < 0) fail("unlink", path);
    }
    t = now() - t0;
    printf("RESULT remove %.3f %.1f ops/s\n", t, n / t);
  } else {
    fprintf(stderr, "nfsclient: unknown phase %s\n", op);
    return 2;
  }
  return 0;
}
