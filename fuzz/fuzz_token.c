/* Tokens. The input is parsed as a token of each purpose (it must never
 * verify: the fuzzer does not know the key), and its first bytes are made
 * into an id whose token must parse back into that id, for its purpose
 * only; with one character of it changed (chosen from the input), it must
 * fail to verify: a token is canonical. */
#include <string.h>

#include "fuzz.h"
#include "token.h"

static const unsigned char key[TOKEN_KEY_LEN] =
    "fuzz-key-0123456789abcdef012345";

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  memcpy(text, data, size);
  text[size] = '\0';
  long long id = -1;
  for (int p = TOKEN_UNSUBSCRIBE; p <= TOKEN_MANAGE; p++)
    FUZZ_CHECK(token_parse(key, text, (TokenPurpose)p, &id) < 0);
  FUZZ_CHECK(id == -1);
  free(text);

  unsigned long long raw = 0;
  for (size_t i = 0; i < size && i < 8; i++) raw = raw << 8 | data[i];
  long long want = (long long)(raw & 0x7fffffffffffffffULL);
  if (want == 0) want = 1;
  TokenPurpose purpose = (TokenPurpose)(TOKEN_UNSUBSCRIBE + (size % 3));
  char t[TOKEN_LEN + 1];
  token_make(key, purpose, want, t);
  FUZZ_CHECK(strlen(t) == TOKEN_LEN);
  FUZZ_CHECK(token_parse(key, t, purpose, &id) == 0 && id == want);
  for (int p = TOKEN_UNSUBSCRIBE; p <= TOKEN_MANAGE; p++)
    if (p != (int)purpose)
      FUZZ_CHECK(token_parse(key, t, (TokenPurpose)p, &id) < 0);
  size_t at = size ? data[size - 1] % TOKEN_LEN : 0;
  size_t k = size > 1 ? data[size - 2] % 63 : 0;
  const char *pos = strchr(alphabet, t[at]);
  t[at] = alphabet[((size_t)(pos - alphabet) + 1 + k) % 64];
  FUZZ_CHECK(token_parse(key, t, purpose, &id) < 0);
  return 0;
}
