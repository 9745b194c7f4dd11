/* The pure parts of the console's login and session: the failed-login
 * check of the rate limiter, the session cookie's parsing and the CSRF
 * token derived from it. */
#include "ratelimit.h"
#include "sessions.h"
#include "unit.h"

TEST(ratelimit_check_takes_nothing) {
  RateLimit *r = ratelimit_new();
  long long retry = 0;
  uint64_t t = 1000000;
  /* An unknown client has its whole bucket, and checking makes none. */
  CHECK(ratelimit_check(r, "1.2.3.4", 3, t, &retry));
  CHECK(ratelimit_size(r) == 0);
  for (int i = 0; i < 3; i++) CHECK(ratelimit_take(r, "1.2.3.4", 3, t, &retry));
  CHECK(!ratelimit_check(r, "1.2.3.4", 3, t, &retry));
  CHECK(retry == 20);
  /* Checking again takes nothing either: still 20 s to wait. */
  CHECK(!ratelimit_check(r, "1.2.3.4", 3, t, &retry));
  CHECK(retry == 20);
  CHECK(ratelimit_check(r, "1.2.3.4", 3, t + 20000, &retry));
  CHECK(ratelimit_check(r, "5.6.7.8", 3, t, &retry));
  ratelimit_free(r);
}

static const char *COOKIE =
    "0123456789abcdef0123456789abcdef."
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(sessions_cookie_parses_only_its_own_shape) {
  char out[SESSION_COOKIE_LEN + 1];
  char header[400];
  snprintf(header, sizeof header, "a=1; restockd_session=%s; b=2", COOKIE);
  CHECK(sessions_cookie(header, out));
  CHECK_STR(out, COOKIE);
  snprintf(header, sizeof header, "restockd_session=%s", COOKIE);
  CHECK(sessions_cookie(header, out));
  CHECK(!sessions_cookie(NULL, out));
  CHECK(!sessions_cookie("", out));
  CHECK(!sessions_cookie("restockd_session=", out));
  CHECK(!sessions_cookie("xrestockd_session=abc", out));
  /* Upper case, a short validator, a missing dot: not a session. */
  snprintf(header, sizeof header, "restockd_session=%s", COOKIE);
  header[strlen("restockd_session=")] = 'A';
  CHECK(!sessions_cookie(header, out));
  snprintf(header, sizeof header, "restockd_session=%.96s", COOKIE);
  CHECK(!sessions_cookie(header, out));
  snprintf(header, sizeof header, "restockd_session=%s0", COOKIE);
  CHECK(!sessions_cookie(header, out));
  /* A bad copy first, a good one after it: the good one is found. */
  snprintf(header, sizeof header, "restockd_session=x; restockd_session=%s",
           COOKIE);
  CHECK(sessions_cookie(header, out));
}

TEST(sessions_csrf_is_bound_to_the_cookie_and_the_secret) {
  Domain d;
  memset(&d, 0, sizeof d);
  memset(d.token_key, 7, sizeof d.token_key);
  char a[SESSION_CSRF_LEN + 1], b[SESSION_CSRF_LEN + 1];
  sessions_csrf(&d, COOKIE, a);
  CHECK(strlen(a) == SESSION_CSRF_LEN);
  CHECK(sessions_csrf_ok(&d, COOKIE, a));
  CHECK(!sessions_csrf_ok(&d, COOKIE, NULL));
  CHECK(!sessions_csrf_ok(&d, COOKIE, ""));
  char other[SESSION_COOKIE_LEN + 1];
  memcpy(other, COOKIE, sizeof other);
  other[SESSION_COOKIE_LEN - 1] = '0';
  sessions_csrf(&d, other, b);
  CHECK(strcmp(a, b) != 0);
  CHECK(!sessions_csrf_ok(&d, other, a));
  memset(d.token_key, 8, sizeof d.token_key);
  CHECK(!sessions_csrf_ok(&d, COOKIE, a));
}
