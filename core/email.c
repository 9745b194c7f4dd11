#include "email.h"

#include "error.h"

#include <idn2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "utf8.h"

#define LOCAL_MAX 64
#define LABEL_MAX 63

static int is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
         c == '\v';
}

static bool all_ascii(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] >= 0x80) return false;
  return true;
}

/* True for a code point that has no place in an address a person types:
 * controls, format characters (bidi overrides, zero-width spaces) other
 * than the joiners some scripts need, separators, surrogates, private use
 * and unassigned code points. Each could make two addresses that look the
 * same differ, or hide what an address says. */
static bool unfit(ucs4_t uc) {
  if (uc == 0x200c || uc == 0x200d) return false; /* ZWNJ, ZWJ */
  return uc_is_general_category_withtable(
      uc, UC_CATEGORY_MASK_C | UC_CATEGORY_MASK_Z);
}

/* Writes the normalized local part of `s` (n > 0 bytes of well-formed
 * UTF-8 with no '@', space or control byte) into `out` (LOCAL_MAX + 1
 * bytes). Returns its length, or -1 with *reason set. */
static int local_part(const char *s, size_t n, char *out, const char **reason) {
  if (all_ascii(s, n)) {
    if (n > LOCAL_MAX) goto too_long;
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)s[i];
      out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
    }
    out[n] = '\0';
    return (int)n;
  }
  /* NFC, so that a decomposed "u" + U+0308 is the same as "ü"; lower case
   * with Unicode's mapping, as ASCII letters always were. */
  uint8_t scratch[4 * LOCAL_MAX];
  size_t len = sizeof scratch;
  uint8_t *lower =
      u8_tolower((const uint8_t *)s, n, NULL, UNINORM_NFC, scratch, &len);
  if (!lower) {
    *reason = "email is not valid UTF-8";
    return RESTOCK_EINVAL;
  }
  int rc = -1;
  if (len > LOCAL_MAX) {
    *reason = "the part of the email before @ must be 1 to 64 characters";
    goto out;
  }
  for (size_t i = 0; i < len;) {
    ucs4_t uc;
    int k = u8_mbtouc(&uc, lower + i, len - i);
    if (k <= 0 || uc == '@' || uc <= 0x20 || uc == 0x7f || unfit(uc)) {
      *reason = "email contains an invisible, unassigned or control character";
      goto out;
    }
    i += (size_t)k;
  }
  memcpy(out, lower, len);
  out[len] = '\0';
  rc = (int)len;
out:
  if (lower != scratch) free(lower);
  return rc;
too_long:
  *reason = "the part of the email before @ must be 1 to 64 characters";
  return RESTOCK_EINVAL;
}

/* True when some label of the NUL-terminated domain starts with "xn--":
 * an A-label, whose Punycode must be checked like any U-label. */
static bool has_alabel(const char *d) {
  for (const char *p = d; *p;) {
    if (strncasecmp(p, "xn--", 4) == 0) return true;
    p = strchr(p, '.');
    if (!p) break;
    p++;
  }
  return false;
}

/* Writes the normalized domain of `s` (n bytes, NUL-free) into `out` (cap
 * bytes). Returns its length, or -1 with *reason set. */
static int domain_part(const char *s, size_t n, char *out, size_t cap,
                       const char **reason) {
  char text[EMAIL_INPUT_MAX + 1];
  memcpy(text, s, n);
  text[n] = '\0';
  const char *ascii = text;
  char *alabels = NULL;
  if (!all_ascii(text, n) || has_alabel(text)) {
    /* UTS #46 maps case, full-width forms and the like and drops what it
     * ignores; then IDNA2008 checks each label and writes it as an
     * A-label. Non-transitional: "ß" stays itself, as in browsers. */
    if (idn2_to_ascii_8z(text, &alabels,
                         IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK) {
      *reason = "email domain is not a valid internationalized domain name";
      return RESTOCK_EINVAL;
    }
    ascii = alabels;
  }
  /* Labels separated by dots, at least two, none empty, made of letters,
   * digits and hyphens (libidn2 lets other ASCII through: "_" or "%"). */
  int rc = -1;
  size_t len = strlen(ascii), labels = 0, label_len = 0;
  if (len + 1 > cap) {
    *reason = "email is longer than 254 characters";
    goto out;
  }
  for (size_t i = 0;; i++) {
    unsigned char c = (unsigned char)ascii[i];
    if (c == '.' || c == '\0') {
      if (label_len == 0 || label_len > LABEL_MAX) {
        *reason = "email domain is not a valid dotted name";
        goto out;
      }
      labels++;
      label_len = 0;
      out[i] = (char)c;
      if (c == '\0') break;
      continue;
    }
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
    if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-') {
      *reason = "email domain contains an invalid character";
      goto out;
    }
    out[i] = (char)c;
    label_len++;
  }
  if (labels < 2) {
    *reason = "email domain must contain a dot";
    goto out;
  }
  rc = (int)len;
out:
  idn2_free(alabels);
  return rc;
}

int email_normalize(const char *in, size_t len, char *out, const char **why) {
  const char *reason = NULL;
  while (len > 0 && is_space((unsigned char)in[0])) in++, len--;
  while (len > 0 && is_space((unsigned char)in[len - 1])) len--;

  if (len == 0) {
    reason = "email is empty";
    goto bad;
  }
  if (len > EMAIL_INPUT_MAX) {
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
  }
  if (!utf8_valid((const unsigned char *)in, len)) {
    reason = "email is not valid UTF-8";
    goto bad;
  }
  if (at == len) {
    reason = "email must contain an @";
    goto bad;
  }
  if (at == 0) {
    reason = "the part of the email before @ must be 1 to 64 characters";
    goto bad;
  }
  int local = local_part(in, at, out, &reason);
  if (local < 0) goto bad;
  out[local] = '@';
  size_t used = (size_t)local + 1;
  if (domain_part(in + at + 1, len - at - 1, out + used, EMAIL_MAX + 1 - used,
                  &reason) < 0)
    goto bad;
  return 0;

bad:
  out[0] = '\0';
  if (why) *why = reason;
  return RESTOCK_EINVAL;
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int email_domains_compile(const char *list, StrList *out, char *err,
                          size_t errlen) {
  strlist_clear(out);
  for (const char *p = list ? list : ""; *p;) {
    while (*p == ' ' || *p == ',') p++;
    const char *end = p;
    while (*end && *end != ',') end++;
    const char *last = end;
    while (last > p && last[-1] == ' ') last--;
    size_t len = (size_t)(last - p);
    if (len > 0) {
      /* Normalized as the domain of an address is. */
      char probe[EMAIL_MAX + 3], entry[EMAIL_MAX + 1];
      if (len > EMAIL_MAX - 2 ||
          (snprintf(probe, sizeof probe, "x@%.*s", (int)len, p),
           email_normalize(probe, strlen(probe), entry, NULL))) {
        snprintf(err, errlen, "'%.*s' is not a domain",
                 (int)(len > 100 ? 100 : len), p);
        strlist_clear(out);
        return RESTOCK_EINVAL;
      }
      strlist_push(out, entry + 2);
    }
    p = end;
  }
  if (out->n > 1) {
    qsort(out->items, out->n, sizeof *out->items, compare_strings);
    size_t k = 1;
    for (size_t i = 1; i < out->n; i++) {
      if (strcmp(out->items[i], out->items[k - 1]) == 0)
        free(out->items[i]);
      else
        out->items[k++] = out->items[i];
    }
    out->n = k;
  }
  return 0;
}

bool email_domain_listed(const StrList *domains, const char *email) {
  if (!domains || domains->n == 0) return false;
  const char *at = strrchr(email, '@');
  /* The domain, then each parent: a.b.example, b.example, example. */
  for (const char *d = at ? at + 1 : NULL; d && *d;) {
    if (bsearch(&d, domains->items, domains->n, sizeof *domains->items,
                compare_strings))
      return true;
    d = strchr(d, '.');
    if (d) d++;
  }
  return false;
}
