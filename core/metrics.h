/* Counters and histograms for GET /metrics, in Prometheus' text exposition
 * format. Everything is in memory and starts from zero at each start, as
 * Prometheus expects of counters; gauges read from the database are filled
 * in by the caller of metrics_render. */
#ifndef RESTOCKD_METRICS_H
#define RESTOCKD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* One HTTP request answered: `route` is the pattern ("/admin/variants/{id}")
 * or "unmatched"; `seconds` its duration. */
void metrics_http(const char *route, int status, double seconds);
/* An event written to the outbox, counted once its transaction committed. */
void metrics_event_emitted(const char *event);
/* Emails put in restock-notification.restocked events by a committed
 * check. */
void metrics_emails_notified(long long n);
/* Notifications converted by a committed order (restock.orders.record). */
void metrics_conversions(long long n);
/* A delivery's outcome: "delivered", "failed" (to be retried) or "dead". */
void metrics_event_outcome(const char *event, const char *outcome);
/* One handler run and how long it took. */
void metrics_handler(const char *handler, double seconds);

typedef struct {
  long long active_subscriptions;
  long long pending_checks;
  long long pending_deliveries;
  /* The storage side's counters (store_stats). */
  unsigned long long store_commits;
  unsigned long long store_units;
  unsigned long long store_failed_commits;
  unsigned long long wal_max_bytes;
  unsigned long long store_round_trips; /* to PostgreSQL */
  /* Issue 14: this node among those sharing the database, and its
   * backend ("sqlite", "postgres"); NULL node: not shown. */
  const char *node;
  const char *backend;
} MetricsGauges;

/* Appends the whole exposition to `out`. */
void metrics_render(Buf *out, const MetricsGauges *g);
/* The same in two parts: the counters this process keeps, then what `g`
 * holds (the database's counts, the store's, the process's). GET /metrics
 * renders the counters before it counts the rows, so that the rows are
 * never older than the counters beside them: a client that saw an event
 * counted as delivered sees its delivery gone from the pending ones. */
void metrics_render_counters(Buf *out);
void metrics_render_state(Buf *out, const MetricsGauges *g);
/* Frees everything (at exit). */
void metrics_reset(void);

#endif
