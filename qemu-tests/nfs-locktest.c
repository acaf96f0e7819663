/* Byte-range (POSIX fcntl) locks across processes on one file, for the NFS client test VM
 * (qemu-tests/nfs.rs): on NFSv4 each process is its own lock owner, so this drives LOCK (new
 * and existing lock owners), LOCKT (F_GETLK), LOCKU and a DENIED answer, and a blocked
 * F_SETLKW that must be granted once the holder unlocks. Prints the failed step; exit 0 = ok.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int lk(int fd, int cmd, short type, off_t start, off_t len, struct flock *out) {
  struct flock f;
  memset(&f, 0, sizeof f);
  f.l_type = type;
  f.l_whence = SEEK_SET;
  f.l_start = start;
  f.l_len = len;
  int r = fcntl(fd, cmd, &f);
  if (out) *out = f;
  return r;
}

#define FAIL(...) do { printf(__VA_ARGS__); printf(" (errno %d)\n", errno); return 1; } while (0)

/* Runs `step` in a child process on its own descriptor; returns its exit code. */
static int in_child(const char *path, int (*step)(int)) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(path, O_RDWR);
    if (fd < 0) _exit(90);
    _exit(step(fd));
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

static int sees_conflict(int fd) {
  struct flock f;
  if (lk(fd, F_GETLK, F_WRLCK, 50, 10, &f) != 0) FAIL("F_GETLK failed");
  if (f.l_type != F_WRLCK || f.l_start != 0 || f.l_len != 100)
    FAIL("F_GETLK saw type %d start %ld len %ld", f.l_type, (long)f.l_start, (long)f.l_len);
  if (lk(fd, F_SETLK, F_WRLCK, 50, 10, 0) == 0) FAIL("conflicting write lock granted");
  if (errno != EAGAIN && errno != EACCES) FAIL("conflicting lock: unexpected error");
  if (lk(fd, F_SETLK, F_WRLCK, 200, 100, 0) != 0) FAIL("disjoint lock refused");
  if (lk(fd, F_SETLK, F_UNLCK, 200, 100, 0) != 0) FAIL("unlock of the disjoint range");
  return 0;
}

static int takes_whole(int fd) {
  if (lk(fd, F_SETLK, F_WRLCK, 0, 0, 0) != 0) FAIL("lock after the holder's unlock refused");
  return 0;
}

static int shares_read(int fd) {
  if (lk(fd, F_SETLK, F_RDLCK, 0, 10, 0) != 0) FAIL("second read lock refused");
  if (lk(fd, F_SETLK, F_WRLCK, 0, 10, 0) == 0) FAIL("write lock over a read lock granted");
  return 0;
}

static int waits(int fd) {
  if (lk(fd, F_SETLKW, F_WRLCK, 0, 1, 0) != 0) FAIL("blocking lock failed");
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  const char *path = argv[1];
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0) FAIL("open %s", path);
  if (lk(fd, F_SETLK, F_WRLCK, 0, 100, 0) != 0) FAIL("first write lock refused");
  if (in_child(path, sees_conflict) != 0) return 1;
  if (lk(fd, F_SETLK, F_UNLCK, 0, 0, 0) != 0) FAIL("unlock");
  if (in_child(path, takes_whole) != 0) return 1;
  if (lk(fd, F_SETLK, F_RDLCK, 0, 10, 0) != 0) FAIL("read lock refused");
  if (in_child(path, shares_read) != 0) return 1;
  if (lk(fd, F_SETLK, F_WRLCK, 0, 1, 0) != 0) FAIL("upgrade to a write lock refused");
  pid_t pid = fork();
  if (pid == 0) {
    int cfd = open(path, O_RDWR);
    _exit(cfd < 0 ? 90 : waits(cfd));
  }
  sleep(1); /* let the child block; the test only needs it to be granted eventually */
  if (lk(fd, F_SETLK, F_UNLCK, 0, 0, 0) != 0) FAIL("unlock before the waiter");
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("the blocked waiter was not granted");
  close(fd);
  return 0;
}
