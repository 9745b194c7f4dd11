#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdint.h>
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
 * that neither key is used for two things. */
static void derive(const unsigned char key[TOKEN_KEY_LEN], const char *label,
                   unsigned char out[32]) {
  unsigned int n = 32;
  HMAC(EVP_sha256(), key, TOKEN_KEY_LEN, (const unsigned char *)label,
       strlen(label), out, &n);
}

/* AES-256 of one block, either way. Returns 0 or -1. */
static int aes_block(const unsigned char key[32], const unsigned char in[16],
                     unsigned char out[16], int encrypt) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int len = 0, ok = ctx &&
                    EVP_CipherInit_ex(ctx, EVP_aes_256_ecb(), NULL, key, NULL,
                                      encrypt) &&
                    EVP_CIPHER_CTX_set_padding(ctx, 0) &&
                    EVP_CipherUpdate(ctx, out, &len, in, BLOCK) && len == BLOCK;
  EVP_CIPHER_CTX_free(ctx);
  return ok ? 0 : -1;
}

static void tag_of(const unsigned char key[TOKEN_KEY_LEN],
                   const unsigned char block[BLOCK], unsigned char out[32]) {
  unsigned char mac_key[32];
  derive(key, "restockd token mac", mac_key);
  unsigned int n = 32;
  HMAC(EVP_sha256(), mac_key, sizeof mac_key, block, BLOCK, out, &n);
  OPENSSL_cleanse(mac_key, sizeof mac_key);
}

void token_make(const unsigned char key[TOKEN_KEY_LEN], TokenPurpose purpose,
                long long id, char out[TOKEN_LEN + 1]) {
  unsigned char plain[BLOCK] = {0}, raw[RAW], enc_key[32], tag[32];
  plain[0] = (unsigned char)purpose;
  for (int i = 0; i < 8; i++)
    plain[8 + i] = (unsigned char)((uint64_t)id >> (56 - 8 * i));
  derive(key, "restockd token enc", enc_key);
  if (aes_block(enc_key, plain, raw, 1)) memset(raw, 0, BLOCK);
  OPENSSL_cleanse(enc_key, sizeof enc_key);
  tag_of(key, raw, tag);
  memcpy(raw + BLOCK, tag, TAG);
  /* 27 bytes are 9 groups of 3: 36 characters, no padding. */
  for (int g = 0; g < RAW / 3; g++) {
    uint32_t v = (uint32_t)raw[3 * g] << 16 | (uint32_t)raw[3 * g + 1] << 8 |
                 raw[3 * g + 2];
    for (int k = 0; k < 4; k++) out[4 * g + k] = b64url[(v >> (18 - 6 * k)) & 63];
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
  tag_of(key, raw, want);
  if (CRYPTO_memcmp(want, raw + BLOCK, TAG) != 0) return RESTOCK_EINVAL;
  unsigned char plain[BLOCK], enc_key[32];
  derive(key, "restockd token enc", enc_key);
  int rc = aes_block(enc_key, raw, plain, 0);
  OPENSSL_cleanse(enc_key, sizeof enc_key);
  if (rc) return RESTOCK_EINVAL;
  if (plain[0] != (unsigned char)purpose) return RESTOCK_EINVAL;
  for (int i = 1; i < 8; i++)
    if (plain[i]) return RESTOCK_EINVAL;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | plain[8 + i];
  if (v == 0 || v > (uint64_t)INT64_MAX) return RESTOCK_EINVAL;
  *id = (long long)v;
  return 0;
}
