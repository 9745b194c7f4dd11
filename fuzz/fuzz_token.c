/* Unsubscribe tokens. The input is parsed as a token (it must never verify:
 * the fuzzer does not know the key), and split at NUL bytes into a variant,
 * a channel and an email that are made into a token, which must parse back
 * into the same three strings; with one byte of it changed (chosen from the
 * input), it must either fail to verify or still name exactly those three
 * strings (base64's unused low bits), never anything else. */
#include <string.h>

#include "fuzz.h"
#include "token.h"

static const unsigned char key[TOKEN_KEY_LEN] =
    "fuzz-key-0123456789abcdef012345";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  memcpy(text, data, size);
  text[size] = '\0';
  char *v = NULL, *c = NULL, *e = NULL;
  FUZZ_CHECK(token_parse(key, text, &v, &c, &e) == -1);
  FUZZ_CHECK(v == NULL && c == NULL && e == NULL);

  /* text holds the input with a NUL after it: up to three strings. */
  const char *end = text + size;
  const char *variant = text;
  const char *channel = variant + strlen(variant) + 1;
  const char *email = channel <= end ? channel + strlen(channel) + 1 : end;
  if (channel > end) channel = "";
  if (email > end) email = "";
  if (strchr(variant, '\n') || strchr(channel, '\n')) {
    free(text);
    return 0; /* the fields of a token are newline-separated */
  }
  char *t = token_make(key, variant, channel, email);
  size_t tlen = strlen(t);
  if (tlen <= 2048) {
    FUZZ_CHECK(token_parse(key, t, &v, &c, &e) == 0);
    FUZZ_CHECK(strcmp(v, variant) == 0 && strcmp(c, channel) == 0 &&
               strcmp(e, email) == 0);
    free(v), free(c), free(e);
    v = c = e = NULL;
    size_t at = size ? data[size - 1] * 7919u % tlen : 0;
    t[at] = t[at] == 'A' ? 'B' : 'A';
    if (token_parse(key, t, &v, &c, &e) == 0) {
      FUZZ_CHECK(strcmp(v, variant) == 0 && strcmp(c, channel) == 0 &&
                 strcmp(e, email) == 0);
      free(v), free(c), free(e);
    }
  }
  free(t);
  free(text);
  return 0;
}
