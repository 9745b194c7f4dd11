/* Times as every stored row and log line shows them: UTC ISO 8601 with
 * milliseconds, "YYYY-MM-DDTHH:MM:SS.mmmZ". */
#ifndef RESTOCKD_ISOTIME_H
#define RESTOCKD_ISOTIME_H

#define ISOTIME_LEN 32

/* Milliseconds since the epoch, now. */
long long isotime_now_ms(void);
/* `ms` milliseconds since the epoch as text. */
void isotime_format(long long ms, char out[ISOTIME_LEN]);
/* The current time as text. Formatted once per millisecond per thread: a
 * batch of 10,000 updates, or a burst of log lines, asks for it tens of
 * thousands of times. Safe from any thread. */
void isotime_now(char out[ISOTIME_LEN]);

#endif
