#include <stdlib.h>

#include "metrics.h"
#include "ratelimit.h"
#include "unit.h"

TEST(ratelimit_bucket_empties_and_refills) {
  RateLimit *r = ratelimit_new();
  long long retry = 0;
  uint64_t t = 1000000;
  for (int i = 0; i < 3; i++)
    CHECK(ratelimit_take(r, "1.2.3.4", 3, t, &retry)); /* a burst of 3 */
  CHECK(!ratelimit_take(r, "1.2.3.4", 3, t, &retry));
  CHECK(retry == 20); /* one token every 20 s at 3 a minute */
  CHECK(ratelimit_take(r, "5.6.7.8", 3, t, &retry)); /* another client */
  CHECK(!ratelimit_take(r, "1.2.3.4", 3, t + 19000, &retry));
  CHECK(retry == 1);
  CHECK(ratelimit_take(r, "1.2.3.4", 3, t + 20000, &retry));
  CHECK(ratelimit_size(r) == 2);
  /* A minute idle: the bucket is full again and is dropped. */
  CHECK(ratelimit_take(r, "9.9.9.9", 3, t + 200000, &retry));
  CHECK(ratelimit_size(r) == 1);
  CHECK(ratelimit_take(r, "x", 0, t, &retry)); /* 0: no limit */
  ratelimit_free(r);
}

TEST(ratelimit_stays_bounded) {
  RateLimit *r = ratelimit_new();
  long long retry = 0;
  char client[32];
  int refused = 0;
  for (int i = 0; i < RATELIMIT_MAX_CLIENTS; i++) {
    snprintf(client, sizeof client, "10.0.%d.%d", i / 256, i % 256);
    if (!ratelimit_take(r, client, 10, 5000 + (uint64_t)i / 1000, &retry))
      refused++;
  }
  CHECK(refused == 0);
  CHECK(ratelimit_size(r) == RATELIMIT_MAX_CLIENTS);
  /* Full of clients seen this minute: a newcomer still gets in, in the
   * slot of the client seen longest ago, and the table does not grow. */
  CHECK(ratelimit_take(r, "192.0.2.1", 10, 5100, &retry));
  CHECK(ratelimit_size(r) == RATELIMIT_MAX_CLIENTS);
  for (int i = 0; i < 1000; i++) {
    snprintf(client, sizeof client, "198.51.%d.%d", i / 256, i % 256);
    if (!ratelimit_take(r, client, 10, 5100, &retry)) refused++;
  }
  CHECK(refused == 0);
  CHECK(ratelimit_size(r) == RATELIMIT_MAX_CLIENTS);
  /* The newcomer is tracked: its bucket keeps its debt. */
  for (int i = 0; i < 9; i++)
    CHECK(ratelimit_take(r, "192.0.2.1", 10, 5100, &retry));
  CHECK(!ratelimit_take(r, "192.0.2.1", 10, 5100, &retry));
  /* The oldest went first: the last of the first fill is still counted
   * (one of its 10 tokens spent), ... */
  for (int i = 0; i < 9; i++)
    CHECK(ratelimit_take(r, "10.0.255.255", 10, 5100, &retry));
  CHECK(!ratelimit_take(r, "10.0.255.255", 10, 5100, &retry));
  /* ... while the first of it was forgotten and starts afresh. */
  for (int i = 0; i < 10; i++)
    CHECK(ratelimit_take(r, "10.0.0.0", 10, 5100, &retry));
  CHECK(!ratelimit_take(r, "10.0.0.0", 10, 5100, &retry));
  CHECK(ratelimit_size(r) == RATELIMIT_MAX_CLIENTS);
  /* A minute later they are all full again, and dropped. */
  CHECK(ratelimit_take(r, "new", 10, 70000, &retry));
  CHECK(ratelimit_size(r) == 1);
  ratelimit_free(r);
}

TEST(ratelimit_counts_ipv6_by_64) {
  RateLimit *r = ratelimit_new();
  long long retry = 0;
  /* Two addresses of one /64 share a bucket, however they are written. */
  CHECK(ratelimit_take(r, "2001:db8:1:2::1", 2, 1000, &retry));
  CHECK(ratelimit_take(r, "2001:DB8:1:2:aaaa:bbbb:cccc:dddd", 2, 1000, &retry));
  CHECK(!ratelimit_take(r, "[2001:db8:1:2::ffff]", 2, 1000, &retry));
  CHECK(ratelimit_size(r) == 1);
  /* Other /64s, even next door, are other clients. */
  CHECK(ratelimit_take(r, "2001:db8:1:3::1", 2, 1000, &retry));
  CHECK(ratelimit_take(r, "2001:db8:2:2::1", 2, 1000, &retry));
  CHECK(ratelimit_size(r) == 3);
  ratelimit_free(r);
}

TEST(ratelimit_maps_ipv4_in_ipv6_to_ipv4) {
  RateLimit *r = ratelimit_new();
  long long retry = 0;
  CHECK(ratelimit_take(r, "192.0.2.7", 2, 1000, &retry));
  CHECK(ratelimit_take(r, "::ffff:192.0.2.7", 2, 1000, &retry));
  CHECK(!ratelimit_take(r, "::FFFF:c000:0207", 2, 1000, &retry));
  /* Not their /64: another IPv4 address of the mapped range. */
  CHECK(ratelimit_take(r, "::ffff:192.0.2.8", 2, 1000, &retry));
  CHECK(ratelimit_size(r) == 2);
  ratelimit_free(r);
}

TEST(ratelimit_client_keys) {
  char key[RATELIMIT_KEY_MAX + 1];
  ratelimit_client_key("2001:db8:1:2:3:4:5:6", key);
  CHECK_STR(key, "2001:db8:1:2::/64");
  ratelimit_client_key("fe80::1%eth0", key);
  CHECK_STR(key, "fe80::/64");
  ratelimit_client_key("::ffff:10.1.2.3", key);
  CHECK_STR(key, "10.1.2.3");
  ratelimit_client_key("203.0.113.9", key);
  CHECK_STR(key, "203.0.113.9");
  ratelimit_client_key("unknown", key);
  CHECK_STR(key, "unknown");
  char longer[200];
  memset(longer, 'x', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  ratelimit_client_key(longer, key);
  CHECK(strlen(key) == RATELIMIT_KEY_MAX);
}

TEST(metrics_render_counts_and_escapes) {
  metrics_reset();
  metrics_http("/health", 200, 0.0004);
  metrics_http("/health", 200, 0.002);
  metrics_http("/a\"b", 404, 0.5);
  metrics_event_emitted("e1");
  metrics_emails_notified(3);
  metrics_emails_notified(2);
  metrics_event_outcome("e1", "dead");
  MetricsGauges g = {.active_subscriptions = 7};
  Buf out = {0};
  metrics_render(&out, &g);
  CHECK(strstr(out.data,
               "restockd_http_requests_total{route=\"/health\",status=\"200\"} "
               "2\n") != NULL);
  CHECK(strstr(out.data, "route=\"/a\\\"b\"") != NULL);
  CHECK(strstr(out.data,
               "restockd_http_request_duration_seconds_bucket{route="
               "\"/health\",le=\"0.0005\"} 1\n") != NULL);
  CHECK(strstr(out.data,
               "restockd_http_request_duration_seconds_bucket{route="
               "\"/health\",le=\"+Inf\"} 2\n") != NULL);
  CHECK(strstr(out.data, "restockd_events_emitted_total{event=\"e1\"} 1\n") !=
        NULL);
  CHECK(strstr(out.data, "restockd_events_dead_total{event=\"e1\"} 1\n") !=
        NULL);
  CHECK(strstr(out.data, "restockd_active_subscriptions 7\n") != NULL);
  CHECK(strstr(out.data, "restockd_emails_notified_total 5\n") != NULL);
  CHECK(strstr(out.data, "restockd_build_info{version=\"" RESTOCKD_VERSION
                         "\"} 1\n") != NULL);
  CHECK(strstr(out.data, "# TYPE process_open_fds gauge\n") != NULL);
  buf_free(&out);
  metrics_reset();
}

