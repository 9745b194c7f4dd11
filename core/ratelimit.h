/* A token bucket per client address, for subscribe_rate_limit. Memory is
 * bounded: a bucket that has refilled completely is the same as no bucket,
 * so those are dropped, and the table never holds more than
 * RATELIMIT_MAX_CLIENTS addresses. */
#ifndef RESTOCKD_RATELIMIT_H
#define RESTOCKD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_MAX_CLIENTS 65536

typedef struct RateLimit RateLimit;

RateLimit *ratelimit_new(void);
void ratelimit_free(RateLimit *r);
/* Takes one token from `client`'s bucket of `per_minute` tokens (refilled
 * continuously), at time `now_ms`. Returns true if the request may go on;
 * false with *retry_after_s (whole seconds until a token is back). */
bool ratelimit_take(RateLimit *r, const char *client, long long per_minute,
                    uint64_t now_ms, long long *retry_after_s);
/* Number of addresses tracked. */
size_t ratelimit_size(const RateLimit *r);

#endif
