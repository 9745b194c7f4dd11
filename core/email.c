#include "email.h"

#include <string.h>

#include "utf8.h"

static int is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
         c == '\v';
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
