/* Runs every registered unit test, each once, and reports the counts. */
#include <stdlib.h>

#include "unit.h"

#define MAX_TESTS 512

static struct {
  const char *name;
  UnitFn fn;
} tests[MAX_TESTS];
static int ntests;
static int current_failures;

void unit_register(const char *name, UnitFn fn) {
  if (ntests == MAX_TESTS) abort();
  tests[ntests].name = name;
  tests[ntests].fn = fn;
  ntests++;
}

void unit_fail(const char *file, int line, const char *what) {
  printf("    %s:%d: check failed: %s\n", file, line, what);
  current_failures++;
}

/* test_xmalloc.c's child: the process it re-executes to run out of memory
 * in (with the sanitizer's allocator returning NULL rather than reporting). */
void unit_oom_child(void);

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--oom-child") == 0) {
    unit_oom_child();
    return 3; /* not reached: running out of memory aborts */
  }
  int passed = 0, failed = 0;
  for (int i = 0; i < ntests; i++) {
    current_failures = 0;
    tests[i].fn();
    printf("%s - %s\n", current_failures ? "FAIL" : "ok", tests[i].name);
    if (current_failures)
      failed++;
    else
      passed++;
  }
  printf("unit: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
