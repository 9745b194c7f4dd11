/* json_text promises the same bytes as json_dumps(v, JSON_COMPACT |
 * JSON_ENCODE_ANY). The input (after a first byte of parser flags) is
 * parsed by jansson, and the value it gives is written both ways: the texts
 * must be equal, byte for byte. json_text may refuse only a value nested
 * deeper than JSON_TEXT_MAX_DEPTH. */
#include <string.h>

#include "fuzz.h"
#include "json_text.h"

static int depth(const json_t *v) {
  int deepest = 0;
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++) {
      int d = depth(json_array_get(v, i));
      if (d > deepest) deepest = d;
    }
    return deepest + 1;
  }
  if (json_is_object(v)) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)v, key, value) {
      int d = depth(value);
      if (d > deepest) deepest = d;
    }
    return deepest + 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  size_t flags = JSON_DECODE_ANY;
  if (data[0] & 1) flags |= JSON_ALLOW_NUL;
  if (data[0] & 2) flags |= JSON_DECODE_INT_AS_REAL;
  if (data[0] & 4) flags |= JSON_DISABLE_EOF_CHECK;
  json_error_t err;
  json_t *v = json_loadb((const char *)data + 1, size - 1, flags, &err);
  if (!v) return 0;
  char *mine = json_text(v);
  char *theirs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!mine) {
    FUZZ_CHECK(depth(v) > JSON_TEXT_MAX_DEPTH);
  } else {
    FUZZ_CHECK(theirs != NULL);
    FUZZ_CHECK(strcmp(mine, theirs) == 0);
  }
  free(mine);
  free(theirs);
  json_decref(v);
  return 0;
}
