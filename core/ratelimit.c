#include "ratelimit.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

/* A bucket refilled for this long is full, the same as no bucket. */
#define FULL_AFTER_MS 60000

/* The key comes first: the tree compares entries and lookup keys alike as
 * strings, so a pointer to an Entry is also a pointer to its key. */
typedef struct Entry {
  char client[RATELIMIT_KEY_MAX + 1];
  struct Entry *older, *newer; /* the list of entries by last use */
  double tokens;
  uint64_t updated_ms;
} Entry;

struct RateLimit {
  void *tree;    /* tsearch(3) root: Entry by key */
  Entry *oldest; /* least recently used, the first to go */
  Entry *newest;
  size_t count;
};

static int compare(const void *a, const void *b) { return strcmp(a, b); }

RateLimit *ratelimit_new(void) { return xcalloc(1, sizeof(RateLimit)); }

static void no_free(void *node) { (void)node; }

void ratelimit_free(RateLimit *r) {
  if (!r) return;
  tdestroy(r->tree, no_free); /* the entries are freed from the list */
  for (Entry *e = r->oldest, *next; e; e = next) {
    next = e->newer;
    free(e);
  }
  free(r);
}

size_t ratelimit_size(const RateLimit *r) { return r->count; }

void ratelimit_client_key(const char *client, char *key) {
  char text[INET6_ADDRSTRLEN + 8];
  size_t n = strlen(client);
  /* "[2001:db8::1]" and "fe80::1%eth0" name an address too. */
  const char *s = client;
  if (n >= 2 && s[0] == '[' && s[n - 1] == ']') s++, n -= 2;
  size_t zone = strcspn(s, "%");
  if (zone < n && memchr(s, ':', zone)) n = zone;
  struct in6_addr a6;
  struct in_addr a4;
  if (n < sizeof text) {
    memcpy(text, s, n);
    text[n] = '\0';
    if (inet_pton(AF_INET, text, &a4) == 1) {
      inet_ntop(AF_INET, &a4, key, RATELIMIT_KEY_MAX + 1);
      return;
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
      if (IN6_IS_ADDR_V4MAPPED(&a6)) {
        memcpy(&a4, &a6.s6_addr[12], 4);
        inet_ntop(AF_INET, &a4, key, RATELIMIT_KEY_MAX + 1);
        return;
      }
      /* One subscriber line or host gets a whole /64: that is the client. */
      memset(&a6.s6_addr[8], 0, 8);
      inet_ntop(AF_INET6, &a6, text, sizeof text);
      snprintf(key, RATELIMIT_KEY_MAX + 1, "%s/64", text);
      return;
    }
  }
  snprintf(key, RATELIMIT_KEY_MAX + 1, "%s", client);
}

/* Milliseconds from `then` to `now`, 0 if the clock went backwards. */
static uint64_t elapsed(uint64_t then, uint64_t now) {
  return now > then ? now - then : 0;
}

/* The tokens of `e` at `now`, refilled at per_minute / 60000 per ms. */
static double refill(const Entry *e, long long per_minute, uint64_t now) {
  double t =
      e->tokens + (double)elapsed(e->updated_ms, now) * per_minute / 60000.0;
  return t > per_minute ? (double)per_minute : t;
}

static void unlink_entry(RateLimit *r, Entry *e) {
  if (e->older)
    e->older->newer = e->newer;
  else
    r->oldest = e->newer;
  if (e->newer)
    e->newer->older = e->older;
  else
    r->newest = e->older;
  e->older = e->newer = NULL;
}

static void push_newest(RateLimit *r, Entry *e) {
  e->older = r->newest;
  e->newer = NULL;
  if (r->newest)
    r->newest->newer = e;
  else
    r->oldest = e;
  r->newest = e;
}

static void drop(RateLimit *r, Entry *e) {
  tdelete(e->client, &r->tree, compare);
  unlink_entry(r, e);
  free(e);
  r->count--;
}

/* Whole seconds until a bucket holding `tokens` has one again. */
static long long retry_after(double tokens, long long per_minute) {
  double wait_ms = (1.0 - tokens) * 60000.0 / (double)per_minute;
  long long s = (long long)ceil(wait_ms / 1000.0 - 1e-9);
  return s < 1 ? 1 : s;
}

bool ratelimit_check(RateLimit *r, const char *client, long long per_minute,
                     uint64_t now, long long *retry_after_s) {
  if (per_minute <= 0) return true;
  char key[RATELIMIT_KEY_MAX + 1];
  ratelimit_client_key(client, key);
  void **found = tfind(key, &r->tree, compare);
  if (!found) return true;
  double tokens = refill(*found, per_minute, now);
  if (tokens >= 1.0) return true;
  *retry_after_s = retry_after(tokens, per_minute);
  return false;
}

bool ratelimit_take(RateLimit *r, const char *client, long long per_minute,
                    uint64_t now, long long *retry_after_s) {
  if (per_minute <= 0) return true;
  /* The list is in order of use, so the full buckets are at its old end:
   * each call drops those, and the table never keeps a forgotten client. */
  while (r->oldest && elapsed(r->oldest->updated_ms, now) >= FULL_AFTER_MS)
    drop(r, r->oldest);

  char key[RATELIMIT_KEY_MAX + 1];
  ratelimit_client_key(client, key);
  void **found = tfind(key, &r->tree, compare);
  Entry *e = found ? *found : NULL;
  if (e) {
    unlink_entry(r, e);
  } else {
    /* Full of clients seen within the minute: forget the one seen longest
     * ago rather than refuse the newcomer. At worst that client gets a
     * fresh bucket early; refusing would let anyone with enough addresses
     * lock every new client out. */
    if (r->count >= RATELIMIT_MAX_CLIENTS) drop(r, r->oldest);
    e = xcalloc(1, sizeof *e);
    memcpy(e->client, key, sizeof key);
    e->tokens = (double)per_minute;
    e->updated_ms = now;
    void **slot = tsearch(e, &r->tree, compare);
    if (!slot) {
      fprintf(stderr, "restockd: out of memory in the rate limiter\n");
      abort();
    }
    r->count++;
  }
  push_newest(r, e);
  e->tokens = refill(e, per_minute, now);
  e->updated_ms = now;
  if (e->tokens >= 1.0) {
    e->tokens -= 1.0;
    return true;
  }
  *retry_after_s = retry_after(e->tokens, per_minute);
  return false;
}
