#include "json_text.h"

#include "error.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_text_string(Buf *b, const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  buf_reserve(b, len + 2);
  buf_append(b, "\"", 1);
  size_t run = 0; /* bytes copied as they are, not yet appended */
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    buf_append(b, s + run, i - run);
    run = i + 1;
    /* The short escapes, then \u00XX for the other control bytes. */
    static const char raw[] = "\"\\\b\f\n\r\t", named[] = "\"\\bfnrt";
    const char *short_form = c ? memchr(raw, c, sizeof raw - 1) : NULL;
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    size_t n = 6;
    if (short_form) {
      esc[1] = named[short_form - raw];
      n = 2;
    }
    buf_append(b, esc, n);
  }
  buf_append(b, s + run, len - run);
  buf_append(b, "\"", 1);
}

void json_text_cstring(Buf *b, const char *s) {
  json_text_string(b, s, strlen(s));
}

static int append(Buf *b, const json_t *v, int depth) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: {
      if (depth == JSON_TEXT_MAX_DEPTH) return RESTOCK_EINVAL;
      buf_append(b, "{", 1);
      const char *key;
      size_t key_len;
      json_t *value;
      bool first = true;
      json_object_keylen_foreach((json_t *)v, key, key_len, value) {
        if (!first) buf_append(b, ",", 1);
        first = false;
        json_text_string(b, key, key_len);
        buf_append(b, ":", 1);
        if (append(b, value, depth + 1)) return RESTOCK_EINVAL;
      }
      buf_append(b, "}", 1);
      return 0;
    }
    case JSON_ARRAY: {
      if (depth == JSON_TEXT_MAX_DEPTH) return RESTOCK_EINVAL;
      buf_append(b, "[", 1);
      for (size_t i = 0, n = json_array_size(v); i < n; i++) {
        if (i) buf_append(b, ",", 1);
        if (append(b, json_array_get(v, i), depth + 1)) return RESTOCK_EINVAL;
      }
      buf_append(b, "]", 1);
      return 0;
    }
    case JSON_STRING:
      json_text_string(b, json_string_value(v), json_string_length(v));
      return 0;
    case JSON_INTEGER: {
      char num[24];
      int n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
                       json_integer_value(v));
      buf_append(b, num, (size_t)n);
      return 0;
    }
    case JSON_REAL: {
      /* Rare here; jansson's own formatting keeps reals exact. */
      char *text = json_dumps(v, JSON_ENCODE_ANY);
      if (!text) return RESTOCK_EINVAL;
      buf_puts(b, text);
      free(text);
      return 0;
    }
    case JSON_TRUE:
      buf_append(b, "true", 4);
      return 0;
    case JSON_FALSE:
      buf_append(b, "false", 5);
      return 0;
    case JSON_NULL:
      buf_append(b, "null", 4);
      return 0;
  }
  return RESTOCK_EINVAL;
}

int json_text_append(Buf *b, const json_t *v) {
  return v ? append(b, v, 0) : -1;
}

char *json_text(const json_t *v) {
  Buf b = {0};
  if (json_text_append(&b, v)) {
    buf_free(&b);
    return NULL;
  }
  return buf_steal(&b);
}
