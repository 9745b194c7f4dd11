/* A token bucket per client, for subscribe_rate_limit.
 *
 * A client is an address as the caller found it (the peer, or the proxy's
 * X-Forwarded-For entry). IPv6 addresses are counted by their /64, the
 * block one subscriber line or host is given, so that rotating through it
 * buys nothing; an IPv4-mapped IPv6 address counts as its IPv4 address.
 * Anything that is not an address is its own client, as written.
 *
 * Memory is bounded: a bucket that has refilled completely is the same as
 * no bucket, so those are dropped, and the table never holds more than
 * RATELIMIT_MAX_CLIENTS clients. When it is full, a newcomer takes the slot
 * of the client seen longest ago (whose bucket has had the longest time to
 * refill), so that filling the table from many addresses can never lock
 * new clients out. The table is a balanced tree, so keys chosen to collide
 * cost no more than any others. */
#ifndef RESTOCKD_RATELIMIT_H
#define RESTOCKD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_MAX_CLIENTS 65536
/* Longest client key kept (longer non-address strings are cut). */
#define RATELIMIT_KEY_MAX 63

typedef struct RateLimit RateLimit;

RateLimit *ratelimit_new(void);
void ratelimit_free(RateLimit *r);
/* Takes one token from `client`'s bucket of `per_minute` tokens (refilled
 * continuously), at time `now_ms`. Returns true if the request may go on;
 * false with *retry_after_s (whole seconds until a token is back).
 * `client` is mapped with ratelimit_client_key first. */
bool ratelimit_take(RateLimit *r, const char *client, long long per_minute,
                    uint64_t now_ms, long long *retry_after_s);
/* Whether `client` has a token left in its bucket of `per_minute`, at
 * `now_ms`, without taking it (or creating a bucket): true, or false with
 * *retry_after_s as ratelimit_take gives it. For limits on failures only
 * (failed console logins): check first, take when one fails. */
bool ratelimit_check(RateLimit *r, const char *client, long long per_minute,
                     uint64_t now_ms, long long *retry_after_s);
/* Writes the bucket key of `client` into `key` (RATELIMIT_KEY_MAX + 1
 * bytes): "192.0.2.1" for an IPv4 address (also written as IPv4-mapped
 * IPv6, in brackets or with a zone), "2001:db8:1:2::/64" for an IPv6
 * address, and the string itself, cut to RATELIMIT_KEY_MAX bytes, for
 * anything else. */
void ratelimit_client_key(const char *client, char *key);
/* Number of clients tracked. */
size_t ratelimit_size(const RateLimit *r);

#endif
