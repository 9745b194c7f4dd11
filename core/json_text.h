/* Compact JSON text of a jansson value: the same bytes as
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), without its per-call costs.
 *
 * jansson's dumper guards against reference cycles by formatting every
 * object's address with snprintf into a hash table; on the subscribe route
 * that made json_dumps 8% of the server's time. Values built here never
 * form cycles (they come from the JSON parser, json_pack or Lua tables
 * copied by value), so a plain recursive walk is enough. */
#ifndef RESTOCKD_JSON_TEXT_H
#define RESTOCKD_JSON_TEXT_H

#include <jansson.h>

#include "buf.h"

/* Deeper nesting than this is refused (jansson's own parser stops at 2048). */
#define JSON_TEXT_MAX_DEPTH 2048

/* Appends v's text to b. Returns 0, or RESTOCK_EINVAL when v nests deeper than
 * JSON_TEXT_MAX_DEPTH or holds an unprintable number (b is then partial). */
int json_text_append(Buf *b, const json_t *v);

/* Appends the JSON string of s's first len bytes (quoted, escaped). */
void json_text_string(Buf *b, const char *s, size_t len);
/* The same for a NUL-terminated s. */
void json_text_cstring(Buf *b, const char *s);

/* v's text in a new string (free it), or NULL as above. */
char *json_text(const json_t *v);

#endif
