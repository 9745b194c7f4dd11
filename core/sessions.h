/* The console's sessions (contract section 5): a browser that logged in with
 * the admin token holds a cookie naming a session row of the database, so
 * that every node sharing it accepts the session and a logout on any node
 * ends it everywhere.
 *
 * The cookie's value is "SELECTOR.VALIDATOR", both random: the selector
 * (16 bytes, hex) finds the row, the validator (32 bytes, hex) proves the
 * holder; only the validator's SHA-256 is stored, and it is compared in
 * constant time. The session's CSRF token is an HMAC of the cookie value
 * under the server's secret (Domain.token_key), so it is never stored and
 * every node derives the same one. */
#ifndef RESTOCKD_SESSIONS_H
#define RESTOCKD_SESSIONS_H

#include <stdbool.h>

#include "domain.h"

/* How long a session lasts: 12 hours. */
#define SESSION_TTL_MS (12LL * 3600 * 1000)
/* The cookie's name. */
#define SESSION_COOKIE "restockd_session"
/* The cookie value's length: 32 hex, a dot, 64 hex. */
#define SESSION_COOKIE_LEN 97
/* A CSRF token's length: 32 bytes of HMAC in base64url, unpadded. */
#define SESSION_CSRF_LEN 43

/* Finds the session cookie in a Cookie header (NULL: none) and copies its
 * value into `out` if it has the right shape. Returns true if so. */
bool sessions_cookie(const char *cookie_header,
                     char out[SESSION_COOKIE_LEN + 1]);
/* The CSRF token of the session whose cookie value is `cookie`. */
void sessions_csrf(const Domain *d, const char *cookie,
                   char out[SESSION_CSRF_LEN + 1]);
/* True when `token` (may be NULL) is the CSRF token of `cookie`, compared
 * in constant time. */
bool sessions_csrf_ok(const Domain *d, const char *cookie, const char *token);

typedef struct SessionCall SessionCall;
struct SessionCall {
  Unit unit; /* private */
  /* In for check and end; out for create. */
  char cookie[SESSION_COOKIE_LEN + 1];
  void (*done)(SessionCall *c, int status);
  long long expires_at; /* out: ms since the epoch */
  void *arg;            /* the caller's */
};

/* Creates a session (and deletes those that have ended): c->cookie and
 * c->expires_at are set before `done` runs with 0. */
void sessions_create(Domain *d, SessionCall *c);
/* Checks the session of c->cookie: `done` gets 0 with c->expires_at if it
 * is valid now, RESTOCK_ENOTFOUND if not (unknown, ended, or a validator
 * that does not match). */
void sessions_check(Domain *d, SessionCall *c);
/* Ends the session of c->cookie (0 whether or not it was there). */
void sessions_end(Domain *d, SessionCall *c);

#endif
