#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"

/* Longest token accepted: three ids and an email, base64, and the MAC. */
#define TOKEN_MAX 2048

void token_key(const char *secret, unsigned char key[TOKEN_KEY_LEN]) {
  SHA256((const unsigned char *)secret, strlen(secret), key);
}

/* Appends base64url (no padding) of `len` bytes. */
static void b64url_append(Buf *b, const unsigned char *data, size_t len) {
  size_t start = b->len;
  buf_reserve(b, 4 * ((len + 2) / 3) + 1);
  int n = EVP_EncodeBlock((unsigned char *)b->data + start, data, (int)len);
  b->len = start + (size_t)n;
  while (b->len > start && b->data[b->len - 1] == '=') b->len--;
  b->data[b->len] = '\0';
  for (size_t i = start; i < b->len; i++) {
    if (b->data[i] == '+') b->data[i] = '-';
    if (b->data[i] == '/') b->data[i] = '_';
  }
}

/* Decodes base64url into a new buffer; returns its length or -1. */
static long b64url_decode(const char *s, size_t len, unsigned char **out) {
  if (len % 4 == 1) return -1;
  size_t padded = (len + 3) / 4 * 4;
  char *tmp = xmalloc(padded + 1);
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9'))) {
      free(tmp);
      return -1;
    }
    tmp[i] = c;
  }
  for (size_t i = len; i < padded; i++) tmp[i] = '=';
  tmp[padded] = '\0';
  unsigned char *bin = xmalloc(padded / 4 * 3 + 1);
  int n = EVP_DecodeBlock(bin, (unsigned char *)tmp, (int)padded);
  free(tmp);
  if (n < 0) {
    free(bin);
    return -1;
  }
  n -= (int)(padded - len); /* EVP_DecodeBlock counts the padding */
  *out = bin;
  return n;
}

/* A context for the last key, reinitialized for each MAC: OpenSSL 3's
 * one-shot HMAC() fetches the algorithm on every call, five times the cost,
 * on a path every new subscription takes. */
static EVP_MAC_CTX *mac_ctx;
static unsigned char mac_key[TOKEN_KEY_LEN];

/* Makes mac_ctx for `key`. Returns 0, or -1 (no context: HMAC() is used). */
static int mac_ctx_for(const unsigned char key[TOKEN_KEY_LEN]) {
  if (mac_ctx && CRYPTO_memcmp(mac_key, key, TOKEN_KEY_LEN) == 0)
    return EVP_MAC_init(mac_ctx, NULL, 0, NULL) ? 0 : -1;
  if (!mac_ctx) {
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!hmac) return -1;
    mac_ctx = EVP_MAC_CTX_new(hmac);
    EVP_MAC_free(hmac); /* the context holds a reference of its own */
    if (!mac_ctx) return -1;
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
      OSSL_PARAM_construct_end()};
  if (!EVP_MAC_init(mac_ctx, key, TOKEN_KEY_LEN, params)) {
    token_cleanup();
    return -1;
  }
  memcpy(mac_key, key, TOKEN_KEY_LEN);
  return 0;
}

void token_cleanup(void) {
  EVP_MAC_CTX_free(mac_ctx);
  mac_ctx = NULL;
}

static void mac(const unsigned char key[TOKEN_KEY_LEN], const void *data,
                size_t len, unsigned char out[32]) {
  size_t outlen = 0;
  if (mac_ctx_for(key) == 0 && EVP_MAC_update(mac_ctx, data, len) &&
      EVP_MAC_final(mac_ctx, out, &outlen, 32) && outlen == 32)
    return;
  unsigned int n = 32;
  HMAC(EVP_sha256(), key, TOKEN_KEY_LEN, data, len, out, &n);
}

char *token_make(const unsigned char key[TOKEN_KEY_LEN], const char *variant,
                 const char *channel, const char *email) {
  Buf payload = {0}, token = {0};
  buf_printf(&payload, "%s\n%s\n%s", variant, channel, email);
  unsigned char m[32];
  mac(key, payload.data, payload.len, m);
  b64url_append(&token, (unsigned char *)payload.data, payload.len);
  buf_puts(&token, ".");
  b64url_append(&token, m, sizeof m);
  buf_free(&payload);
  return buf_steal(&token);
}

int token_parse(const unsigned char key[TOKEN_KEY_LEN], const char *token,
                char **variant, char **channel, char **email) {
  size_t len = strnlen(token, TOKEN_MAX + 1);
  const char *dot = memchr(token, '.', len);
  if (len > TOKEN_MAX || !dot) return -1;
  unsigned char *payload = NULL, *given = NULL;
  long plen = b64url_decode(token, (size_t)(dot - token), &payload);
  long mlen = plen < 0 ? -1
                       : b64url_decode(dot + 1, len - (size_t)(dot - token) - 1,
                                       &given);
  int rc = -1;
  if (plen >= 0 && mlen == 32) {
    unsigned char want[32];
    mac(key, payload, (size_t)plen, want);
    if (CRYPTO_memcmp(want, given, 32) == 0) {
      char *p = (char *)payload;
      char *nl1 = memchr(p, '\n', (size_t)plen);
      char *nl2 =
          nl1 ? memchr(nl1 + 1, '\n', (size_t)(p + plen - nl1 - 1)) : NULL;
      if (nl2 && !memchr(p, '\0', (size_t)plen)) {
        *variant = xstrndup(p, (size_t)(nl1 - p));
        *channel = xstrndup(nl1 + 1, (size_t)(nl2 - nl1 - 1));
        *email = xstrndup(nl2 + 1, (size_t)(p + plen - nl2 - 1));
        rc = 0;
      }
    }
  }
  free(payload);
  free(given);
  return rc;
}
