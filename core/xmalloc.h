/* Allocation helpers: every allocation failure is fatal, so callers never
 * check for NULL. */
#ifndef RESTOCKD_XMALLOC_H
#define RESTOCKD_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a newly allocated string built from a printf format. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
