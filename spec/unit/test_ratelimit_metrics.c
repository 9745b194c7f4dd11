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
  for (int i = 0; i < RATELIMIT_MAX_CLIENTS; i++) {
    snprintf(client, sizeof client, "10.0.%d.%d", i / 256, i % 256);
    CHECK(ratelimit_take(r, client, 10, 5000, &retry) || i < 0);
  }
  CHECK(ratelimit_size(r) == RATELIMIT_MAX_CLIENTS);
  /* Full of clients seen this minute: a new one waits rather than push
   * someone's spent bucket out. */
  CHECK(!ratelimit_take(r, "new", 10, 5000, &retry));
  CHECK(ratelimit_size(r) == RATELIMIT_MAX_CLIENTS);
  /* A minute later they are all full again, and swept. */
  CHECK(ratelimit_take(r, "new", 10, 70000, &retry));
  CHECK(ratelimit_size(r) == 1);
  ratelimit_free(r);
}

TEST(metrics_render_counts_and_escapes) {
  metrics_reset();
  metrics_http("/health", 200, 0.0004);
  metrics_http("/health", 200, 0.002);
  metrics_http("/a\"b", 404, 0.5);
  metrics_event_emitted("e1");
  metrics_discard(); /* rolled back: not counted */
  metrics_event_emitted("e1");
  metrics_commit();
  metrics_event_outcome("e1", "dead");
  MetricsGauges g = {.active_subscriptions = 7};
  Buf out = {0};
  metrics_render(&out, &g);
  CHECK(strstr(out.data,
               "restockd_http_requests_total{route=\"/health\",status=\"200\"} "
               "2\n") != NULL);
  CHECK(strstr(out.data, "route=\"/a\\\"b\"") != NULL);
  CHECK(strstr(out.data, "restockd_http_request_duration_seconds_bucket{route="
                         "\"/health\",le=\"0.0005\"} 1\n") != NULL);
  CHECK(strstr(out.data, "restockd_http_request_duration_seconds_bucket{route="
                         "\"/health\",le=\"+Inf\"} 2\n") != NULL);
  CHECK(strstr(out.data, "restockd_events_emitted_total{event=\"e1\"} 1\n") !=
        NULL);
  CHECK(strstr(out.data, "restockd_events_dead_total{event=\"e1\"} 1\n") !=
        NULL);
  CHECK(strstr(out.data, "restockd_active_subscriptions 7\n") != NULL);
  CHECK(strstr(out.data, "# TYPE process_open_fds gauge\n") != NULL);
  CHECK(strstr(out.data, "restockd_build_info{version=\"" RESTOCKD_VERSION
                         "\"} 1\n") != NULL);
  buf_free(&out);
  metrics_reset();
}

TEST(metrics_emails_notified_count_when_committed) {
  metrics_reset();
  MetricsGauges g = {0};
  Buf out = {0};
  metrics_emails_notified(3);
  metrics_render(&out, &g);
  /* Not committed yet: not counted. */
  CHECK(strstr(out.data, "\nrestockd_emails_notified_total 0\n") != NULL);
  metrics_discard(); /* rolled back */
  metrics_emails_notified(2);
  metrics_emails_notified(1);
  metrics_commit();
  metrics_commit(); /* a second commit adds nothing more */
  buf_reset(&out);
  metrics_render(&out, &g);
  CHECK(strstr(out.data, "\nrestockd_emails_notified_total 3\n") != NULL);
  CHECK(strstr(out.data, "# TYPE restockd_emails_notified_total counter\n") !=
        NULL);
  buf_free(&out);
  metrics_reset();
}
