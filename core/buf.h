/* A growable byte buffer. A zeroed Buf is empty and valid. */
#ifndef RESTOCKD_BUF_H
#define RESTOCKD_BUF_H

#include <stddef.h>

typedef struct {
  char *data; /* NUL-terminated whenever len > 0 or cap > 0. */
  size_t len;
  size_t cap;
} Buf;

void buf_reserve(Buf *b, size_t extra);
void buf_append(Buf *b, const void *data, size_t len);
void buf_puts(Buf *b, const char *s);
void buf_printf(Buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Empties the buffer but keeps its memory. */
void buf_reset(Buf *b);
/* Frees the memory; the buffer is empty and valid afterwards. */
void buf_free(Buf *b);
/* Hands the data to the caller (who frees it) and empties the buffer. */
char *buf_steal(Buf *b);

#endif
