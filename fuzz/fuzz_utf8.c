/* utf8.c against libunistring, a second implementation of the same rules:
 * utf8_valid agrees with u8_check on every input, and utf8_sequence agrees
 * with u8_mbtoucr at every offset (the length of a well-formed sequence,
 * or 0 for anything else: a stray byte, a cut sequence, an overlong form,
 * a surrogate, past U+10FFFF). */
#include <unistr.h>

#include "fuzz.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int mine = utf8_valid(data, size);
  int theirs = u8_check(data, size) == NULL;
  FUZZ_CHECK(mine == theirs);
  for (size_t i = 0; i < size; i++) {
    ucs4_t uc;
    int n = u8_mbtoucr(&uc, data + i, size - i);
    size_t want = n > 0 ? (size_t)n : 0;
    FUZZ_CHECK(utf8_sequence(data + i, size - i) == want);
  }
  FUZZ_CHECK(utf8_sequence(data, 0) == 0);
  return 0;
}
