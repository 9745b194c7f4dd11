/* Times as every stored row and log line shows them: UTC ISO 8601 with
 * milliseconds, "YYYY-MM-DDTHH:MM:SS.mmmZ". */
#ifndef RESTOCKD_ISOTIME_H
#define RESTOCKD_ISOTIME_H

#include <stddef.h>

#define ISOTIME_LEN 32

/* Milliseconds since the epoch, now. */
long long isotime_now_ms(void);
/* `ms` milliseconds since the epoch as text. */
void isotime_format(long long ms, char out[ISOTIME_LEN]);
/* The current time as text. Formatted once per millisecond per thread: a
 * batch of 10,000 updates, or a burst of log lines, asks for it tens of
 * thousands of times. Safe from any thread. */
void isotime_now(char out[ISOTIME_LEN]);
/* Parses an ISO 8601 date-time as shops write them: "YYYY-MM-DD",
 * optionally followed by "T" (or a space) and "HH:MM", ":SS" and a
 * fraction of a second (milliseconds are kept), then "Z", "+HH:MM",
 * "+HHMM", "+HH" (or "-"), or nothing, which is taken as UTC. The whole of
 * the `len` bytes must be the time. Writes the milliseconds since the
 * epoch to *ms and returns 0, or RESTOCK_EINVAL (years 1000 to 9999
 * only). */
int isotime_parse(const char *s, size_t len, long long *ms);

#endif
