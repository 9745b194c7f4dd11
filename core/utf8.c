#include "utf8.h"

size_t utf8_sequence(const unsigned char *s, size_t len) {
  if (len == 0) return 0;
  unsigned char c = s[0];
  size_t n;
  unsigned int cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 1, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    n = 2, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 3, cp = c & 0x07;
  else
    return 0;
  for (size_t k = 1; k <= n; k++) {
    if (k >= len || (s[k] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[k] & 0x3f);
  }
  if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n + 1;
}

int utf8_valid(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    size_t n = utf8_sequence(s + i, len - i);
    if (n == 0) return 0;
    i += n;
  }
  return 1;
}
