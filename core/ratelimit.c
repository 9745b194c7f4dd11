#include "ratelimit.h"

#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#define NBUCKETS 4096

typedef struct Entry {
  struct Entry *next;
  double tokens;
  uint64_t updated_ms;
  char client[64];
} Entry;

struct RateLimit {
  Entry *table[NBUCKETS];
  size_t count;
  uint64_t last_sweep_ms;
};

RateLimit *ratelimit_new(void) { return xcalloc(1, sizeof(RateLimit)); }

void ratelimit_free(RateLimit *r) {
  if (!r) return;
  for (size_t i = 0; i < NBUCKETS; i++)
    for (Entry *e = r->table[i], *next; e; e = next) {
      next = e->next;
      free(e);
    }
  free(r);
}

size_t ratelimit_size(const RateLimit *r) { return r->count; }

static uint32_t hash(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* The tokens of `e` at `now`, refilled at per_minute / 60000 per ms. */
static double refill(const Entry *e, long long per_minute, uint64_t now) {
  double t = e->tokens + (double)(now - e->updated_ms) * per_minute / 60000.0;
  return t > per_minute ? (double)per_minute : t;
}

/* Drops the buckets that are full again (idle for a minute or more). */
static void sweep(RateLimit *r, uint64_t now) {
  for (size_t i = 0; i < NBUCKETS; i++) {
    Entry **p = &r->table[i];
    while (*p) {
      if (now - (*p)->updated_ms >= 60000) {
        Entry *dead = *p;
        *p = dead->next;
        free(dead);
        r->count--;
      } else {
        p = &(*p)->next;
      }
    }
  }
  r->last_sweep_ms = now;
}

bool ratelimit_take(RateLimit *r, const char *client, long long per_minute,
                    uint64_t now, long long *retry_after_s) {
  if (per_minute <= 0) return true;
  if (now - r->last_sweep_ms >= 60000) sweep(r, now);
  Entry **slot = &r->table[hash(client) % NBUCKETS];
  Entry *e = *slot;
  while (e && strcmp(e->client, client) != 0) e = e->next;
  if (!e) {
    if (r->count >= RATELIMIT_MAX_CLIENTS) sweep(r, now);
    if (r->count >= RATELIMIT_MAX_CLIENTS) {
      /* Every slot is in use by a client seen within the minute: refuse
       * rather than forget someone's spent bucket. */
      *retry_after_s = 1;
      return false;
    }
    e = xcalloc(1, sizeof *e);
    snprintf(e->client, sizeof e->client, "%s", client);
    e->tokens = (double)per_minute;
    e->updated_ms = now;
    e->next = *slot;
    *slot = e;
    r->count++;
  }
  e->tokens = refill(e, per_minute, now);
  e->updated_ms = now;
  if (e->tokens >= 1.0) {
    e->tokens -= 1.0;
    return true;
  }
  double wait_ms = (1.0 - e->tokens) * 60000.0 / (double)per_minute;
  *retry_after_s = (long long)ceil(wait_ms / 1000.0 - 1e-9);
  if (*retry_after_s < 1) *retry_after_s = 1;
  return false;
}
