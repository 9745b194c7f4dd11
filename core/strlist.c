#include "strlist.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

void strlist_push(StrList *l, const char *s) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 8;
    l->items = xrealloc(l->items, l->cap * sizeof *l->items);
  }
  l->items[l->n++] = xstrdup(s);
}

int strlist_has(const StrList *l, const char *s) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->items[i], s) == 0) return 1;
  return 0;
}

void strlist_clear(StrList *l) {
  for (size_t i = 0; i < l->n; i++) free(l->items[i]);
  free(l->items);
  memset(l, 0, sizeof *l);
}

void strlist_copy(StrList *dst, const StrList *src) {
  strlist_clear(dst);
  for (size_t i = 0; i < src->n; i++) strlist_push(dst, src->items[i]);
}
