#include "metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xmalloc.h"

/* Distinct label values kept per family: a plugin emitting events under
 * ever-new names must not grow memory without bound. Past it, "other". */
#define MAX_SERIES 512

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                 0.025,  0.05,  0.1,    0.25,  0.5,
                                 1,      2.5,   5,      10,    30};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct {
  uint64_t counts[NBUCKETS]; /* not cumulative; summed when rendered */
  uint64_t total;
  double sum;
} Histogram;

/* A series: up to two label values, and its counter or histogram. */
typedef struct {
  char *a, *b;
  uint64_t count;
  Histogram h;
} Series;

typedef struct {
  Series *items;
  size_t n, cap;
} Family;

static Family http_requests, http_durations, emitted, outcomes, handlers;
static unsigned long long emails_notified;
static unsigned long long conversions;

static Series *series(Family *f, const char *a, const char *b) {
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->items[i].a, a) == 0 && (!b || strcmp(f->items[i].b, b) == 0))
      return &f->items[i];
  if (f->n >= MAX_SERIES - 1 && strcmp(a, "other") != 0)
    return series(f, "other", b ? "other" : NULL);
  if (f->n == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 16;
    f->items = xrealloc(f->items, f->cap * sizeof *f->items);
  }
  Series *s = &f->items[f->n++];
  memset(s, 0, sizeof *s);
  s->a = xstrdup(a);
  s->b = xstrdup(b ? b : "");
  return s;
}

static void observe(Histogram *h, double v) {
  size_t i = 0;
  while (i < NBUCKETS && v > buckets[i]) i++;
  if (i < NBUCKETS) h->counts[i]++;
  h->total++;
  h->sum += v;
}

void metrics_http(const char *route, int status, double seconds) {
  char code[16];
  snprintf(code, sizeof code, "%d", status);
  series(&http_requests, route, code)->count++;
  observe(&series(&http_durations, route, NULL)->h, seconds);
}

void metrics_event_emitted(const char *event) {
  series(&emitted, event, NULL)->count++;
}

void metrics_emails_notified(long long n) {
  if (n > 0) emails_notified += (unsigned long long)n;
}

void metrics_conversions(long long n) {
  if (n > 0) conversions += (unsigned long long)n;
}

void metrics_event_outcome(const char *event, const char *outcome) {
  series(&outcomes, event, outcome)->count++;
}

void metrics_handler(const char *handler, double seconds) {
  observe(&series(&handlers, handler, NULL)->h, seconds);
}

/* Appends a label value, escaped as the exposition format asks. */
static void label(Buf *out, const char *v) {
  for (; *v; v++) {
    if (*v == '\\')
      buf_puts(out, "\\\\");
    else if (*v == '"')
      buf_puts(out, "\\\"");
    else if (*v == '\n')
      buf_puts(out, "\\n");
    else
      buf_append(out, v, 1);
  }
}

static void header(Buf *out, const char *name, const char *type,
                   const char *help) {
  buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(Buf *out, const char *name, const char *lname,
                      const Family *f) {
  for (size_t i = 0; i < f->n; i++) {
    const Series *s = &f->items[i];
    uint64_t cum = 0;
    for (size_t k = 0; k < NBUCKETS; k++) {
      cum += s->h.counts[k];
      buf_printf(out, "%s_bucket{%s=\"", name, lname);
      label(out, s->a);
      buf_printf(out, "\",le=\"%g\"} %llu\n", buckets[k],
                 (unsigned long long)cum);
    }
    buf_printf(out, "%s_bucket{%s=\"", name, lname);
    label(out, s->a);
    buf_printf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)s->h.total);
    buf_printf(out, "%s_sum{%s=\"", name, lname);
    label(out, s->a);
    buf_printf(out, "\"} %.6f\n", s->h.sum);
    buf_printf(out, "%s_count{%s=\"", name, lname);
    label(out, s->a);
    buf_printf(out, "\"} %llu\n", (unsigned long long)s->h.total);
  }
}

static void counter1(Buf *out, const char *name, const char *lname,
                     const Family *f, const char *only_b) {
  for (size_t i = 0; i < f->n; i++) {
    const Series *s = &f->items[i];
    if (only_b && strcmp(s->b, only_b) != 0) continue;
    buf_printf(out, "%s{%s=\"", name, lname);
    label(out, s->a);
    buf_printf(out, "\"} %llu\n", (unsigned long long)s->count);
  }
}

static long long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  long long n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

static long long resident_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long long size = 0, rss = -1;
  if (f) {
    if (fscanf(f, "%lld %lld", &size, &rss) != 2) rss = -1;
    fclose(f);
  }
  return rss < 0 ? -1 : rss * sysconf(_SC_PAGESIZE);
}

void metrics_render(Buf *out, const MetricsGauges *g) {
  metrics_render_counters(out);
  metrics_render_state(out, g);
}

void metrics_render_counters(Buf *out) {
  header(out, "restockd_http_requests_total", "counter",
         "HTTP requests answered, by route pattern and status code.");
  for (size_t i = 0; i < http_requests.n; i++) {
    buf_puts(out, "restockd_http_requests_total{route=\"");
    label(out, http_requests.items[i].a);
    buf_printf(out, "\",status=\"%s\"} %llu\n", http_requests.items[i].b,
               (unsigned long long)http_requests.items[i].count);
  }
  header(out, "restockd_http_request_duration_seconds", "histogram",
         "Time from a complete request to its queued answer, by route.");
  histogram(out, "restockd_http_request_duration_seconds", "route",
            &http_durations);
  header(out, "restockd_events_emitted_total", "counter",
         "Events written to the outbox, by event name.");
  counter1(out, "restockd_events_emitted_total", "event", &emitted, NULL);
  const char *kinds[][2] = {
      {"delivered", "Deliveries a handler completed, by event name."},
      {"failed", "Deliveries that failed and will be retried, by event name."},
      {"dead", "Deliveries given up on, by event name."}};
  for (size_t k = 0; k < 3; k++) {
    char name[64];
    snprintf(name, sizeof name, "restockd_events_%s_total", kinds[k][0]);
    header(out, name, "counter", kinds[k][1]);
    counter1(out, name, "event", &outcomes, kinds[k][0]);
  }
  header(out, "restockd_emails_notified_total", "counter",
         "Emails put in restock-notification.restocked events.");
  buf_printf(out, "restockd_emails_notified_total %llu\n", emails_notified);
  header(out, "restockd_conversions_total", "counter",
         "Notifications converted: an order of the notified variant by the "
         "notified email within conversion_window.");
  buf_printf(out, "restockd_conversions_total %llu\n", conversions);
  header(out, "restockd_build_info", "gauge",
         "Always 1; the version of the running binary is its label.");
  buf_printf(out, "restockd_build_info{version=\"%s\"} 1\n", RESTOCKD_VERSION);
  header(out, "restockd_handler_duration_seconds", "histogram",
         "Time a handler took to run one delivery, waits included.");
  histogram(out, "restockd_handler_duration_seconds", "handler", &handlers);
}

void metrics_render_state(Buf *out, const MetricsGauges *g) {
  header(out, "restockd_active_subscriptions", "gauge",
         "Restock subscriptions waiting for their variant.");
  buf_printf(out, "restockd_active_subscriptions %lld\n",
             g->active_subscriptions);
  header(out, "restockd_pending_checks", "gauge",
         "Restock checks scheduled and not yet run.");
  buf_printf(out, "restockd_pending_checks %lld\n", g->pending_checks);
  header(out, "restockd_pending_deliveries", "gauge",
         "Event deliveries waiting to run or be retried.");
  buf_printf(out, "restockd_pending_deliveries %lld\n", g->pending_deliveries);
  header(out, "restockd_store_commits_total", "counter",
         "Transactions the storage writer committed (each holds a group of "
         "writes).");
  buf_printf(out, "restockd_store_commits_total %llu\n", g->store_commits);
  header(out, "restockd_store_writes_total", "counter",
         "Units of work the storage writer ran (a subscribe is one).");
  buf_printf(out, "restockd_store_writes_total %llu\n", g->store_units);
  header(out, "restockd_store_failed_commits_total", "counter",
         "Group commits that failed (every write of the group answered 503).");
  buf_printf(out, "restockd_store_failed_commits_total %llu\n",
             g->store_failed_commits);
  header(out, "restockd_wal_max_bytes", "gauge",
         "The largest size the SQLite write-ahead log reached.");
  buf_printf(out, "restockd_wal_max_bytes %llu\n", g->wal_max_bytes);
  header(out, "restockd_store_round_trips_total", "counter",
         "Round trips to the database server (PostgreSQL), all connections.");
  buf_printf(out, "restockd_store_round_trips_total %llu\n",
             g->store_round_trips);
  if (g->node) {
    header(out, "restockd_node_info", "gauge",
           "Always 1; its labels name this node among those sharing the "
           "database, and its backend.");
    buf_puts(out, "restockd_node_info{node=\"");
    label(out, g->node);
    buf_puts(out, "\",backend=\"");
    label(out, g->backend ? g->backend : "");
    buf_puts(out, "\"} 1\n");
  }
  header(out, "process_resident_memory_bytes", "gauge",
         "Resident memory size in bytes.");
  buf_printf(out, "process_resident_memory_bytes %lld\n", resident_bytes());
  header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
  buf_printf(out, "process_open_fds %lld\n", open_fds());
}

static void family_free(Family *f) {
  for (size_t i = 0; i < f->n; i++) {
    free(f->items[i].a);
    free(f->items[i].b);
  }
  free(f->items);
  memset(f, 0, sizeof *f);
}

void metrics_reset(void) {
  family_free(&http_requests);
  family_free(&http_durations);
  family_free(&emitted);
  family_free(&outcomes);
  family_free(&handlers);
  emails_notified = 0;
  conversions = 0;
}
