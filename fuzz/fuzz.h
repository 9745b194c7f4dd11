/* What every fuzz target shares: libFuzzer's entry point and a check that
 * stops the run with a message when an invariant does not hold, so that
 * libFuzzer saves the input as a crash. */
#ifndef RESTOCKD_FUZZ_H
#define RESTOCKD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                      \
      abort();                                                             \
    }                                                                      \
  } while (0)

#endif
