/* Percent-decoding and query/form pair parsing on any bytes. The first byte
 * picks '+' handling and the pair limit. A decoded string is never longer
 * than its input and never holds a NUL; a parse that succeeds has at most
 * the limit's pairs, each with a key and a value, and agrees with decoding
 * each '&'-separated piece by itself. */
#include <string.h>

#include "fuzz.h"
#include "url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  int plus_space = data[0] & 1;
  size_t max_pairs = (data[0] >> 1) % 20;
  const char *s = (const char *)data + 1;
  size_t len = size - 1;

  char *d = url_decode(s, len, plus_space);
  if (d) {
    FUZZ_CHECK(strlen(d) <= len);
    FUZZ_CHECK(memchr(s, '\0', len) == NULL);
    free(d);
  }

  KeyValueList list = {0};
  if (url_parse_pairs(s, len, max_pairs, &list) != 0) {
    FUZZ_CHECK(list.count == 0 && list.items == NULL);
    return 0;
  }
  FUZZ_CHECK(list.count <= max_pairs);
  /* Walk the pieces again and compare each with its pair. */
  size_t i = 0;
  const char *end = s + len;
  for (const char *p = s; p < end;) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp ? amp : end;
    if (stop > p) {
      FUZZ_CHECK(i < list.count);
      const char *eq = memchr(p, '=', (size_t)(stop - p));
      char *key = url_decode(p, (size_t)((eq ? eq : stop) - p), 1);
      FUZZ_CHECK(key && strcmp(key, list.items[i].key) == 0);
      free(key);
      FUZZ_CHECK(list.items[i].value != NULL);
      i++;
    }
    p = amp ? amp + 1 : end;
  }
  FUZZ_CHECK(i == list.count);
  if (list.count > 0) {
    const char *first = url_pairs_get(&list, list.items[0].key);
    FUZZ_CHECK(first == list.items[0].value);
  }
  url_pairs_free(&list);
  FUZZ_CHECK(list.count == 0 && list.items == NULL);
  return 0;
}
