#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define BLOCK 16
#define TAG 11
#define RAW (BLOCK + TAG)

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void token_key(const char *secret, unsigned char key[TOKEN_KEY_LEN]) {
  SHA256((const unsigned char *)secret, strlen(secret), key);
}

/* The encryption and MAC keys: HMAC-SHA256 of a label under the key, so
 * that neither key is used for two things. Derived once per key and
 * thread: a restock check makes two tokens per shopper. */
typedef struct {
  unsigned char master[TOKEN_KEY_LEN];
  bool set;
  unsigned char enc[32], mac[32], nonce[32];
  EVP_CIPHER_CTX *ecb_enc, *ecb_dec;
  /* Keyed once, re-initialized per use: OpenSSL 3's one-shot HMAC() looks
   * the algorithm up on every call, which cost a restock check more than
   * the rest of making its tokens. */
  EVP_MAC_CTX *tag_mac, *nonce_mac;
  EVP_CIPHER_CTX *gcm_enc, *gcm_dec;
} Keys;

static EVP_MAC *hmac_alg;

static pthread_key_t keys_slot;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void keys_free(void *p) {
  Keys *k = p;
  EVP_CIPHER_CTX_free(k->ecb_enc);
  EVP_CIPHER_CTX_free(k->ecb_dec);
  EVP_CIPHER_CTX_free(k->gcm_enc);
  EVP_CIPHER_CTX_free(k->gcm_dec);
  EVP_MAC_CTX_free(k->tag_mac);
  EVP_MAC_CTX_free(k->nonce_mac);
  OPENSSL_cleanse(k, sizeof *k);
  free(k);
}

static void keys_init(void) {
  pthread_key_create(&keys_slot, keys_free);
  hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
  if (!hmac_alg) abort();
}

/* An HMAC-SHA256 context keyed with `key`. */
static EVP_MAC_CTX *mac_new(const unsigned char key[32]) {
  EVP_MAC_CTX *c = EVP_MAC_CTX_new(hmac_alg);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                         OSSL_PARAM_construct_end()};
  if (!c || !EVP_MAC_init(c, key, 32, params)) abort();
  return c;
}

/* HMAC-SHA256 of `in` with a context from mac_new. */
static void mac_of(EVP_MAC_CTX *c, const unsigned char *in, size_t len,
                   unsigned char out[32]) {
  size_t n = 0;
  if (!EVP_MAC_init(c, NULL, 0, NULL) || !EVP_MAC_update(c, in, len) ||
      !EVP_MAC_final(c, out, &n, 32) || n != 32)
    abort();
}

static void derive(const unsigned char key[TOKEN_KEY_LEN], const char *label,
                   unsigned char out[32]) {
  unsigned int n = 32;
  HMAC(EVP_sha256(), key, TOKEN_KEY_LEN, (const unsigned char *)label,
       strlen(label), out, &n);
}

/* This thread's keys for `key` (the same key, nearly always). */
static Keys *keys_for(const unsigned char key[TOKEN_KEY_LEN]) {
  pthread_once(&keys_once, keys_init);
  Keys *k = pthread_getspecific(keys_slot);
  if (!k) {
    k = calloc(1, sizeof *k);
    if (!k) abort();
    pthread_setspecific(keys_slot, k);
  }
  if (!k->set || CRYPTO_memcmp(k->master, key, TOKEN_KEY_LEN) != 0) {
    memcpy(k->master, key, TOKEN_KEY_LEN);
    derive(key, "restockd token enc", k->enc);
    derive(key, "restockd token mac", k->mac);
    derive(key, "restockd token nonce", k->nonce);
    EVP_CIPHER_CTX_free(k->ecb_enc);
    EVP_CIPHER_CTX_free(k->ecb_dec);
    k->ecb_enc = EVP_CIPHER_CTX_new();
    k->ecb_dec = EVP_CIPHER_CTX_new();
    if (!k->ecb_enc || !k->ecb_dec ||
        !EVP_EncryptInit_ex(k->ecb_enc, EVP_aes_256_ecb(), NULL, k->enc,
                            NULL) ||
        !EVP_DecryptInit_ex(k->ecb_dec, EVP_aes_256_ecb(), NULL, k->enc, NULL))
      abort();
    EVP_CIPHER_CTX_set_padding(k->ecb_enc, 0);
    EVP_CIPHER_CTX_set_padding(k->ecb_dec, 0);
    EVP_MAC_CTX_free(k->tag_mac);
    EVP_MAC_CTX_free(k->nonce_mac);
    k->tag_mac = mac_new(k->mac);
    k->nonce_mac = mac_new(k->nonce);
    EVP_CIPHER_CTX_free(k->gcm_enc);
    EVP_CIPHER_CTX_free(k->gcm_dec);
    k->gcm_enc = EVP_CIPHER_CTX_new();
    k->gcm_dec = EVP_CIPHER_CTX_new();
    if (!k->gcm_enc || !k->gcm_dec ||
        !EVP_EncryptInit_ex(k->gcm_enc, EVP_aes_256_gcm(), NULL, k->enc,
                            NULL) ||
        !EVP_DecryptInit_ex(k->gcm_dec, EVP_aes_256_gcm(), NULL, k->enc, NULL))
      abort();
    k->set = true;
  }
  return k;
}

/* AES-256 of one block, either way. Returns 0 or -1. */
static int aes_block(Keys *k, const unsigned char in[16], unsigned char out[16],
                     int encrypt) {
  int len = 0;
  EVP_CIPHER_CTX *ctx = encrypt ? k->ecb_enc : k->ecb_dec;
  return EVP_CipherUpdate(ctx, out, &len, in, BLOCK) && len == BLOCK ? 0 : -1;
}

static void tag_of(Keys *k, const unsigned char block[BLOCK],
                   unsigned char out[32]) {
  mac_of(k->tag_mac, block, BLOCK, out);
}

void token_make(const unsigned char key[TOKEN_KEY_LEN], TokenPurpose purpose,
                long long id, char out[TOKEN_LEN + 1]) {
  unsigned char plain[BLOCK] = {0}, raw[RAW], tag[32];
  plain[0] = (unsigned char)purpose;
  for (int i = 0; i < 8; i++)
    plain[8 + i] = (unsigned char)((uint64_t)id >> (56 - 8 * i));
  Keys *k = keys_for(key);
  if (aes_block(k, plain, raw, 1)) memset(raw, 0, BLOCK);
  tag_of(k, raw, tag);
  memcpy(raw + BLOCK, tag, TAG);
  /* 27 bytes are 9 groups of 3: 36 characters, no padding. */
  for (int g = 0; g < RAW / 3; g++) {
    uint32_t v = (uint32_t)raw[3 * g] << 16 | (uint32_t)raw[3 * g + 1] << 8 |
                 raw[3 * g + 2];
    for (int c = 0; c < 4; c++)
      out[4 * g + c] = b64url[(v >> (18 - 6 * c)) & 63];
  }
  out[TOKEN_LEN] = '\0';
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

int token_parse(const unsigned char key[TOKEN_KEY_LEN], const char *token,
                TokenPurpose purpose, long long *id) {
  if (strnlen(token, TOKEN_LEN + 1) != TOKEN_LEN) return RESTOCK_EINVAL;
  unsigned char raw[RAW];
  for (int g = 0; g < RAW / 3; g++) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
      int x = b64_value(token[4 * g + k]);
      if (x < 0) return RESTOCK_EINVAL;
      v = v << 6 | (uint32_t)x;
    }
    raw[3 * g] = (unsigned char)(v >> 16);
    raw[3 * g + 1] = (unsigned char)(v >> 8);
    raw[3 * g + 2] = (unsigned char)v;
  }
  unsigned char want[32];
  Keys *k = keys_for(key);
  tag_of(k, raw, want);
  if (CRYPTO_memcmp(want, raw + BLOCK, TAG) != 0) return RESTOCK_EINVAL;
  unsigned char plain[BLOCK];
  if (aes_block(k, raw, plain, 0)) return RESTOCK_EINVAL;
  if (plain[0] != (unsigned char)purpose) return RESTOCK_EINVAL;
  for (int i = 1; i < 8; i++)
    if (plain[i]) return RESTOCK_EINVAL;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | plain[8 + i];
  if (v == 0 || v > (uint64_t)INT64_MAX) return RESTOCK_EINVAL;
  *id = (long long)v;
  return 0;
}

/* ---- manage tokens ---------------------------------------------------------
 */

#define GCM_NONCE 12
#define GCM_TAG 16
#define MANAGE_AAD "restockd manage token"
#define MANAGE_RAW_MAX (1 + GCM_NONCE + 255 + GCM_TAG)

/* base64url of `len` bytes, without padding. */
static size_t b64_encode(const unsigned char *in, size_t len, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    size_t chars = len - i >= 3 ? 4 : len - i + 1;
    for (size_t c = 0; c < chars; c++)
      out[o++] = b64url[(v >> (18 - 6 * c)) & 63];
  }
  out[o] = '\0';
  return o;
}

void token_make_manage(const unsigned char key[TOKEN_KEY_LEN],
                       const char *email, char out[TOKEN_MANAGE_MAX]) {
  size_t len = strnlen(email, 255);
  unsigned char raw[MANAGE_RAW_MAX], digest[32];
  Keys *k = keys_for(key);
  mac_of(k->nonce_mac, (const unsigned char *)email, len, digest);
  raw[0] = TOKEN_MANAGE;
  memcpy(raw + 1, digest, GCM_NONCE);
  /* The key was set once; each token sets only its nonce. */
  EVP_CIPHER_CTX *ctx = k->gcm_enc;
  int outl = 0,
      ok =
          EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, raw + 1) &&
          EVP_EncryptUpdate(ctx, NULL, &outl, (const unsigned char *)MANAGE_AAD,
                            (int)strlen(MANAGE_AAD)) &&
          EVP_EncryptUpdate(ctx, raw + 1 + GCM_NONCE, &outl,
                            (const unsigned char *)email, (int)len) &&
          EVP_EncryptFinal_ex(ctx, raw + 1 + GCM_NONCE + len, &outl) &&
          EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG,
                              raw + 1 + GCM_NONCE + len);
  if (!ok) abort();
  b64_encode(raw, 1 + GCM_NONCE + len + GCM_TAG, out);
}

int token_parse_manage(const unsigned char key[TOKEN_KEY_LEN],
                       const char *token, char *email, size_t elen) {
  size_t tlen = strnlen(token, TOKEN_MANAGE_MAX);
  if (tlen == 0 || tlen >= TOKEN_MANAGE_MAX || tlen % 4 == 1)
    return RESTOCK_EINVAL;
  unsigned char raw[MANAGE_RAW_MAX + 3];
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < tlen; i++) {
    int x = b64_value(token[i]);
    if (x < 0) return RESTOCK_EINVAL;
    acc = acc << 6 | (uint32_t)x;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (n == sizeof raw) return RESTOCK_EINVAL;
      raw[n++] = (unsigned char)(acc >> bits);
    }
  }
  /* Canonical: the bits left over must be zero. */
  if (acc & ((1u << bits) - 1)) return RESTOCK_EINVAL;
  if (n < 1 + GCM_NONCE + 1 + GCM_TAG || raw[0] != TOKEN_MANAGE)
    return RESTOCK_EINVAL;
  size_t len = n - 1 - GCM_NONCE - GCM_TAG;
  if (len >= elen || len > 254) return RESTOCK_EINVAL;
  Keys *k = keys_for(key);
  EVP_CIPHER_CTX *ctx = k->gcm_dec;
  int outl = 0,
      ok =
          EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, raw + 1) &&
          EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *)MANAGE_AAD,
                            (int)strlen(MANAGE_AAD)) &&
          EVP_DecryptUpdate(ctx, (unsigned char *)email, &outl,
                            raw + 1 + GCM_NONCE, (int)len) &&
          EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG,
                              raw + 1 + GCM_NONCE + len) &&
          EVP_DecryptFinal_ex(ctx, (unsigned char *)email + len, &outl);
  if (!ok) return RESTOCK_EINVAL;
  email[len] = '\0';
  if (strlen(email) != len) return RESTOCK_EINVAL;
  return 0;
}
