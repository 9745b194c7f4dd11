/* Percent-decoding and application/x-www-form-urlencoded parsing, shared by
 * the router (path parameters), query strings and form bodies. */
#ifndef RESTOCKD_URL_H
#define RESTOCKD_URL_H

#include <stddef.h>

#include "buf.h"

/* Decodes `len` bytes of `in`. With `plus_space`, '+' stands for a space (form
 * and query encoding). Returns a new NUL-terminated string, or NULL if the
 * input has a malformed %XX escape or decodes to a NUL byte. */
char *url_decode(const char *in, size_t len, int plus_space);

typedef struct {
  char *key;
  char *value;
} KeyValue;

typedef struct {
  KeyValue *items;
  size_t count;
} KeyValueList;

/* Parses "a=1&b=2" (a query string or form body) into `out`, which must be
 * zeroed or freshly freed. A key without '=' gets the empty value; empty
 * pairs are skipped. Returns 0, or RESTOCK_EINVAL (out left empty) on a bad
 * escape or on more than `max_pairs` pairs. */
int url_parse_pairs(const char *s, size_t len, size_t max_pairs,
                    KeyValueList *out);
/* The value of the first pair named `key`, or NULL. */
const char *url_pairs_get(const KeyValueList *list, const char *key);
void url_pairs_free(KeyValueList *list);

/* Appends `len` bytes percent-encoded: every byte but RFC 3986's
 * unreserved characters (ALPHA DIGIT - . _ ~) becomes %XX with upper-case
 * hex, a space included (%20, never '+'). That is what a query value, a
 * form field (url_parse_pairs reads it back) and AWS Signature Version 4's
 * canonical query all take. */
void url_encode(const char *in, size_t len, Buf *out);

#endif
