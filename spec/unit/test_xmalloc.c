/* Running out of memory is fatal, and the log lines still buffered go out
 * before the process ends (issue 13: what led to it is not lost with it).
 * The test re-executes this binary as a child (--oom-child) with the
 * sanitizers' allocators told to return NULL for an impossible size, so
 * that xmalloc's own failure path runs, and reads the child's stderr. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"
#include "xmalloc.h"

void unit_oom_child(void);
void unit_oom_child(void) {
  log_set_buffered(true);
  log_msg(LOG_INFO, "a line written before memory ran out");
  /* More than any allocator gives: xmalloc's failure path. */
  volatile size_t huge = (size_t)1 << 62;
  void *p = xmalloc(huge);
  free(p);
}

static char *with_null(const char *name) {
  const char *old = getenv(name);
  size_t n = (old ? strlen(old) : 0) + 64;
  char *v = malloc(n);
  snprintf(v, n, "%s%sallocator_may_return_null=1", old ? old : "",
           old && *old ? ":" : "");
  return v;
}

TEST(xmalloc_failure_flushes_the_log_then_aborts) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    char *asan = with_null("ASAN_OPTIONS"), *tsan = with_null("TSAN_OPTIONS");
    setenv("ASAN_OPTIONS", asan, 1);
    setenv("TSAN_OPTIONS", tsan, 1);
    char *argv[] = {"unit_tests", "--oom-child", NULL};
    execv("/proc/self/exe", argv);
    _exit(4);
  }
  close(fds[1]);
  char out[8192];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof out - 1 &&
         (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
    len += (size_t)n;
  out[len] = '\0';
  close(fds[0]);
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  const char *line = strstr(out, "a line written before memory ran out");
  const char *oom = strstr(out, "restockd: out of memory allocating");
  CHECK(line != NULL);
  CHECK(oom != NULL);
  CHECK(line && oom && line < oom);
  if (!line || !oom) fprintf(stderr, "the child wrote:\n%s\n", out);
}
