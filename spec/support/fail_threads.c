/* For the specs (spec/hardening_lua_spec.lua, "out of threads"): loaded
 * with LD_PRELOAD, it lets the first RESTOCK_TEST_THREADS pthread_create
 * calls of the process through and fails every later one with EAGAIN, as
 * the kernel does for a process at its thread limit (RLIMIT_NPROC, a
 * cgroup's pids.max), which root cannot be held to. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *,
                         void *(*)(void *), void *);

static atomic_int made;

int pthread_create(pthread_t *t, const pthread_attr_t *attr,
                   void *(*fn)(void *), void *arg) {
  static create_fn real;
  if (!real) real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
  const char *limit = getenv("RESTOCK_TEST_THREADS");
  if (limit && atomic_fetch_add(&made, 1) >= atoi(limit)) return EAGAIN;
  return real(t, attr, fn, arg);
}
