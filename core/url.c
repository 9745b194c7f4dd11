#include "url.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1; /* not a hex digit */
}

char *url_decode(const char *in, size_t len, int plus_space) {
  char *out = xmalloc(len + 1);
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = in[i];
    if (c == '%') {
      int hi = i + 2 < len ? hexval(in[i + 1]) : -1;
      int lo = i + 2 < len ? hexval(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) goto bad;
      c = (char)(hi * 16 + lo);
      if (c == '\0') goto bad;
      i += 2;
    } else if (c == '+' && plus_space) {
      c = ' ';
    } else if (c == '\0') {
      goto bad;
    }
    out[o++] = c;
  }
  out[o] = '\0';
  return out;
bad:
  free(out);
  return NULL;
}

int url_parse_pairs(const char *s, size_t len, size_t max_pairs,
                    KeyValueList *out) {
  out->items = NULL;
  out->count = 0;
  size_t cap = 0;
  const char *end = s + len;
  while (s < end) {
    const char *amp = memchr(s, '&', (size_t)(end - s));
    const char *stop = amp ? amp : end;
    if (stop > s) {
      if (out->count == max_pairs) goto bad;
      const char *eq = memchr(s, '=', (size_t)(stop - s));
      const char *kend = eq ? eq : stop;
      char *key = url_decode(s, (size_t)(kend - s), 1);
      char *value =
          eq ? url_decode(eq + 1, (size_t)(stop - eq - 1), 1) : xstrdup("");
      if (!key || !value) {
        free(key);
        free(value);
        goto bad;
      }
      if (out->count == cap) {
        cap = cap ? cap * 2 : 4;
        out->items = xrealloc(out->items, cap * sizeof *out->items);
      }
      out->items[out->count].key = key;
      out->items[out->count].value = value;
      out->count++;
    }
    s = amp ? amp + 1 : end;
  }
  return 0;
bad:
  url_pairs_free(out);
  return RESTOCK_EINVAL;
}

const char *url_pairs_get(const KeyValueList *list, const char *key) {
  for (size_t i = 0; i < list->count; i++)
    if (strcmp(list->items[i].key, key) == 0) return list->items[i].value;
  return NULL;
}

void url_pairs_free(KeyValueList *list) {
  for (size_t i = 0; i < list->count; i++) {
    free(list->items[i].key);
    free(list->items[i].value);
  }
  free(list->items);
  list->items = NULL;
  list->count = 0;
}

void url_encode(const char *in, size_t len, Buf *out) {
  static const char hex[] = "0123456789ABCDEF";
  buf_reserve(out, len);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      buf_append(out, in + i, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      buf_append(out, e, 3);
    }
  }
}
