/* Email address validation, as the subscribe route needs it. */
#ifndef RESTOCKD_EMAIL_H
#define RESTOCKD_EMAIL_H

#include <stddef.h>

#define EMAIL_MAX 254

/* Trims ASCII whitespace around `in` (len bytes, not NUL-terminated), lower-
 * cases ASCII letters and checks that the result is a plausible address: one
 * '@', a local part of 1 to 64 bytes, a domain of at least two non-empty
 * dot-separated labels, at most EMAIL_MAX bytes in all, and no spaces,
 * control characters or NUL bytes. On success writes the address into `out`
 * (at least EMAIL_MAX + 1 bytes) and returns 0. On failure returns -1 and, if
 * `why` is not NULL, points it at a static sentence saying what is wrong. */
int email_normalize(const char *in, size_t len, char *out, const char **why);

#endif
