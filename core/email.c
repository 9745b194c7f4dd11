#include "email.h"

#include <string.h>

static int is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
         c == '\v';
}

/* True when the `len` bytes at `s` are well-formed UTF-8 (no overlong forms,
 * no surrogates, nothing past U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    size_t n;
    unsigned int cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3, cp = c & 0x07;
    } else {
      return 0;
    }
    for (size_t k = 1; k <= n; k++) {
      if (i + k >= len || (s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n + 1;
  }
  return 1;
}

int email_normalize(const char *in, size_t len, char *out, const char **why) {
  const char *reason = NULL;
  while (len > 0 && is_space((unsigned char)in[0])) in++, len--;
  while (len > 0 && is_space((unsigned char)in[len - 1])) len--;

  if (len == 0) {
    reason = "email is empty";
    goto bad;
  }
  if (len > EMAIL_MAX) {
    reason = "email is longer than 254 characters";
    goto bad;
  }
  size_t at = len;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c <= 0x20 || c == 0x7f) {
      reason = "email contains a space or control character";
      goto bad;
    }
    if (c == '@') {
      if (at != len) {
        reason = "email must contain exactly one @";
        goto bad;
      }
      at = i;
    }
    out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
  }
  out[len] = '\0';
  if (!utf8_valid((const unsigned char *)out, len)) {
    reason = "email is not valid UTF-8";
    goto bad;
  }
  if (at == len) {
    reason = "email must contain an @";
    goto bad;
  }
  if (at == 0 || at > 64) {
    reason = "the part of the email before @ must be 1 to 64 characters";
    goto bad;
  }
  /* The domain: labels separated by dots, at least two, none empty, made of
   * letters, digits, hyphens or non-ASCII bytes (internationalized names). */
  const char *d = out + at + 1;
  size_t labels = 0, label_len = 0;
  for (;; d++) {
    unsigned char c = (unsigned char)*d;
    if (c == '.' || c == '\0') {
      if (label_len == 0 || label_len > 63) {
        reason = "email domain is not a valid dotted name";
        goto bad;
      }
      labels++;
      label_len = 0;
      if (c == '\0') break;
      continue;
    }
    if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' &&
        c < 0x80) {
      reason = "email domain contains an invalid character";
      goto bad;
    }
    label_len++;
  }
  if (labels < 2) {
    reason = "email domain must contain a dot";
    goto bad;
  }
  return 0;

bad:
  out[0] = '\0';
  if (why) *why = reason;
  return -1;
}
