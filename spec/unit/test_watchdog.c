#include <stdint.h>

#include "unit.h"
#include "watchdog.h"

/* The watchdog reads the loop's mark and then the clock; a mark taken after
 * its clock reading (by a thread that ran in between) must count as no
 * wait, not as an unsigned wrap that looks like 584 years held. */
TEST(watchdog_elapsed_never_wraps) {
  CHECK(watchdog_elapsed_ns(0, 5000) == 0);       /* no mark */
  CHECK(watchdog_elapsed_ns(1000, 5000) == 4000); /* held 4 us */
  CHECK(watchdog_elapsed_ns(5000, 5000) == 0);    /* marked just now */
  CHECK(watchdog_elapsed_ns(5001, 5000) == 0);    /* marked after now */
  CHECK(watchdog_elapsed_ns(UINT64_MAX, 1) == 0);
  CHECK(watchdog_elapsed_ns(1, UINT64_MAX) == UINT64_MAX - 1);
}
