/* A growable list of owned strings: ids read from the database, a channel's
 * locations, the emails of a batch. A zeroed StrList is empty and valid. */
#ifndef RESTOCKD_STRLIST_H
#define RESTOCKD_STRLIST_H

#include <stddef.h>

typedef struct {
  char **items;
  size_t n, cap;
} StrList;

/* Appends a copy of `s`. */
void strlist_push(StrList *l, const char *s);
/* True when the list holds a string equal to `s`. */
int strlist_has(const StrList *l, const char *s);
/* Frees every string and the array; the list is empty and valid after. */
void strlist_clear(StrList *l);
/* Deep copy into `dst` (cleared first). */
void strlist_copy(StrList *dst, const StrList *src);

#endif
