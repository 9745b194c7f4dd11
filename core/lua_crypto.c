/* restock.crypto: digests, encodings and a constant-time compare for
 * scripts that verify or make signatures (a shop's webhook, a provider's
 * request signing). Everything is OpenSSL's libcrypto; nothing here is a
 * hand-written digest. Digests are raw bytes, so that a script can feed one
 * into the next HMAC (AWS Signature Version 4 chains four) and choose its
 * own encoding (hex, base64). */
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "lua_connect.h"

/* The longest key or message HMAC takes: OpenSSL's one-shot call takes the
 * key length as an int. */
#define MAX_KEY 0x7fffffff

/* restock.crypto.hmac_sha256(key, data): the 32-byte MAC, raw. */
static int l_hmac_sha256(lua_State *L) {
  size_t klen, mlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *msg = luaL_checklstring(L, 2, &mlen);
  luaL_argcheck(L, klen <= MAX_KEY, 1, "key too long");
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, mac,
            &maclen))
    return luaL_error(L, "restock.crypto.hmac_sha256: libcrypto failed");
  lua_pushlstring(L, (const char *)mac, maclen);
  return 1;
}

/* restock.crypto.sha256(data): the 32-byte digest, raw. */
static int l_sha256(lua_State *L) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)data, len, md);
  lua_pushlstring(L, (const char *)md, sizeof md);
  return 1;
}

/* restock.crypto.hex(s): the bytes of s as lower-case hex. */
static int l_hex(lua_State *L) {
  static const char digits[] = "0123456789abcdef";
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, 2 * len);
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[s[i] >> 4];
    out[2 * i + 1] = digits[s[i] & 15];
  }
  luaL_pushresultsize(&b, 2 * len);
  return 1;
}

/* restock.crypto.base64_encode(s): RFC 4648 base64, standard alphabet,
 * padded, without line breaks. */
static int l_base64_encode(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len <= (size_t)MAX_KEY / 4 * 3, 1, "too long to encode");
  size_t out_len = 4 * ((len + 2) / 3);
  luaL_Buffer b;
  /* EVP_EncodeBlock writes a NUL after the text. */
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, out_len + 1);
  int n = EVP_EncodeBlock(out, s, (int)len);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static bool base64_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* restock.crypto.base64_decode(s): the bytes, or nil and a message when s is
 * not canonical padded base64 of the standard alphabet (no whitespace, no
 * URL-safe letters, no stray bits in the last character), so that a
 * garbled signature header is told from a wrong one. */
static int l_base64_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *why = NULL;
  if (len % 4 != 0) why = "its length is not a multiple of 4";
  size_t pad = 0;
  if (!why && len >= 1 && s[len - 1] == '=') pad++;
  if (!why && len >= 2 && s[len - 2] == '=') pad++;
  for (size_t i = 0; !why && i < len - pad; i++)
    if (!base64_char((unsigned char)s[i]))
      why = "it holds a character outside the base64 alphabet";
  if (!why && len > (size_t)MAX_KEY) why = "it is too long";
  if (why) {
    lua_pushnil(L);
    lua_pushfstring(L, "not base64: %s", why);
    return 2;
  }
  if (len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  luaL_Buffer b;
  unsigned char *out =
      (unsigned char *)luaL_buffinitsize(L, &b, len / 4 * 3 + 1);
  int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
  if (n < 0 || (size_t)n < pad) {
    luaL_pushresultsize(&b, 0);
    lua_pushnil(L);
    lua_pushliteral(L, "not base64: libcrypto refused it");
    return 2;
  }
  /* EVP_DecodeBlock counts the padding as zero bytes. */
  size_t out_len = (size_t)n - pad;
  /* Canonical: the bits past the last byte are zero, so that one byte
   * string has exactly one encoding. Re-encoding the last group tells. */
  unsigned char check[5];
  size_t tail = out_len % 3 ? out_len % 3 : 3;
  EVP_EncodeBlock(check, out + out_len - tail, (int)tail);
  bool canonical = memcmp(check, s + len - 4, 4) == 0;
  luaL_pushresultsize(&b, out_len);
  if (!canonical) {
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_pushliteral(L, "not base64: its last character has stray bits");
    return 2;
  }
  return 1;
}

/* restock.crypto.equal(a, b): true when the two strings are the same bytes,
 * compared in constant time for strings of one length (the length of a
 * signature is no secret). */
static int l_equal(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

void lua_crypto_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"hmac_sha256", l_hmac_sha256},
                                 {"sha256", l_sha256},
                                 {"hex", l_hex},
                                 {"base64_encode", l_base64_encode},
                                 {"base64_decode", l_base64_decode},
                                 {"equal", l_equal},
                                 {NULL, NULL}};
  /* [restock] */
  luaL_newlib(L, fns); /* [restock, crypto] */
  lua_setfield(L, -2, "crypto");
}
