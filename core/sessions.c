#include "sessions.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"
#include "log.h"

#define SELECTOR_HEX 32
#define VALIDATOR_HEX 64

static void hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static bool all_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

/* True when `v` has the shape of a cookie value: SELECTOR.VALIDATOR in
 * lower-case hex. */
static bool well_formed(const char *v, size_t n) {
  return n == SESSION_COOKIE_LEN && all_hex(v, SELECTOR_HEX) &&
         v[SELECTOR_HEX] == '.' && all_hex(v + SELECTOR_HEX + 1, VALIDATOR_HEX);
}

bool sessions_cookie(const char *header, char out[SESSION_COOKIE_LEN + 1]) {
  static const char name[] = SESSION_COOKIE "=";
  const size_t name_len = sizeof name - 1;
  /* "a=1; restockd_session=...; b=2": pairs split by ';' and spaces. */
  for (const char *p = header; p && *p;) {
    while (*p == ' ' || *p == ';' || *p == '\t') p++;
    size_t n = strcspn(p, ";");
    if (n > name_len && memcmp(p, name, name_len) == 0) {
      const char *v = p + name_len;
      size_t vn = n - name_len;
      while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t')) vn--;
      if (well_formed(v, vn)) {
        memcpy(out, v, vn);
        out[vn] = '\0';
        return true;
      }
    }
    p += n;
  }
  return false;
}

void sessions_csrf(const Domain *d, const char *cookie,
                   char out[SESSION_CSRF_LEN + 1]) {
  static const char label[] = "restockd console csrf:";
  unsigned char mac[32];
  unsigned int len = sizeof mac;
  unsigned char msg[sizeof label + SESSION_COOKIE_LEN];
  size_t n = strlen(cookie);
  if (n > SESSION_COOKIE_LEN) n = SESSION_COOKIE_LEN;
  memcpy(msg, label, sizeof label - 1);
  memcpy(msg + sizeof label - 1, cookie, n);
  HMAC(EVP_sha256(), d->token_key, TOKEN_KEY_LEN, msg, sizeof label - 1 + n,
       mac, &len);
  /* base64url without padding: 32 bytes make 43 characters. */
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0;
  unsigned bits = 0, acc = 0;
  for (size_t i = 0; i < sizeof mac; i++) {
    acc = (acc << 8) | mac[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out[o++] = b64[(acc >> bits) & 63];
    }
  }
  if (bits) out[o++] = b64[(acc << (6 - bits)) & 63];
  out[o] = '\0';
}

bool sessions_csrf_ok(const Domain *d, const char *cookie, const char *token) {
  if (!token || strlen(token) != SESSION_CSRF_LEN) return false;
  char want[SESSION_CSRF_LEN + 1];
  sessions_csrf(d, cookie, want);
  return CRYPTO_memcmp(want, token, SESSION_CSRF_LEN) == 0;
}

/* The hex SHA-256 of the cookie's validator half. */
static void validator_hash(const char *cookie, char out[65]) {
  unsigned char digest[32];
  SHA256((const unsigned char *)cookie + SELECTOR_HEX + 1, VALIDATOR_HEX,
         digest);
  hex(digest, sizeof digest, out);
}

/* ---- create ----------------------------------------------------------------
 */

static int create_fn(StoreTx *tx, void *arg) {
  SessionCall *c = arg;
  char selector[SELECTOR_HEX + 1], hash[65], now[ISOTIME_LEN];
  memcpy(selector, c->cookie, SELECTOR_HEX);
  selector[SELECTOR_HEX] = '\0';
  validator_hash(c->cookie, hash);
  long long now_ms = isotime_now_ms();
  isotime_format(now_ms, now);
  c->expires_at = now_ms + SESSION_TTL_MS;
  /* Ended sessions go as new ones come: the table holds at most the
   * sessions of the last 12 hours. */
  long long pruned = 0;
  int rc = store_session_prune(tx, now_ms, &pruned);
  if (rc == 0) rc = store_session_put(tx, selector, hash, now, c->expires_at);
  return rc;
}

static void call_finish(Unit *u, int status) {
  SessionCall *c = (SessionCall *)u;
  c->done(c, status);
}

void sessions_create(Domain *d, SessionCall *c) {
  unsigned char selector[SELECTOR_HEX / 2], validator[VALIDATOR_HEX / 2];
  if (RAND_bytes(selector, sizeof selector) != 1 ||
      RAND_bytes(validator, sizeof validator) != 1) {
    /* Without randomness there is no session worth having. */
    log_error("sessions: the random generator failed");
    abort();
  }
  hex(selector, sizeof selector, c->cookie);
  c->cookie[SELECTOR_HEX] = '.';
  hex(validator, sizeof validator, c->cookie + SELECTOR_HEX + 1);
  OPENSSL_cleanse(validator, sizeof validator);
  unit_write(d, &c->unit, create_fn, call_finish);
}

/* ---- check ------------------------------------------------------------------
 */

static int check_fn(StoreTx *tx, void *arg) {
  SessionCall *c = arg;
  char selector[SELECTOR_HEX + 1], stored[65] = "", hash[65];
  memcpy(selector, c->cookie, SELECTOR_HEX);
  selector[SELECTOR_HEX] = '\0';
  int rc =
      store_session_get(tx, selector, isotime_now_ms(), stored, &c->expires_at);
  if (rc) return rc;
  validator_hash(c->cookie, hash);
  return strlen(stored) == 64 && CRYPTO_memcmp(stored, hash, 64) == 0
             ? 0
             : RESTOCK_ENOTFOUND;
}

void sessions_check(Domain *d, SessionCall *c) {
  unit_read(d, &c->unit, check_fn, call_finish);
}

/* ---- end
 * ---------------------------------------------------------------------- */

static int end_fn(StoreTx *tx, void *arg) {
  SessionCall *c = arg;
  char selector[SELECTOR_HEX + 1];
  memcpy(selector, c->cookie, SELECTOR_HEX);
  selector[SELECTOR_HEX] = '\0';
  return store_session_delete(tx, selector);
}

void sessions_end(Domain *d, SessionCall *c) {
  unit_write(d, &c->unit, end_fn, call_finish);
}
