#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "isotime.h"
#include "json_text.h"
#include "log.h"
#include "metrics.h"
#include "lua_host.h"
#include "store.h"
#include "xmalloc.h"

/* Most handlers one event name can have. */
#define MAX_HANDLERS 64
/* How far past a handler's timeout its lease reaches. */
#define LEASE_MARGIN_MS 5000
/* The longest retry delay: backoff doubles up to this. */
#define MAX_BACKOFF_MS (3600LL * 1000)

struct Outbox {
  App *app;
  uv_timer_t timer; /* the earliest future delivery */
  uv_idle_t soon;   /* work due now, after the loop has polled for I/O */
  uv_timer_t prune; /* deletes delivered events past their retention */
  long long retention_ms;
  int open_handles;
  size_t inflight;
  bool stopping;
  void (*idle)(void *);
  void *idle_arg;
};

/* One delivery being run. */
typedef struct {
  Outbox *outbox;
  long long event_id;
  char *event;
  char *handler;
  long long attempts; /* before this run */
  long long max_attempts;
  uint64_t started_ns;
} Run;

static void on_timer(uv_timer_t *t);

static void on_soon(uv_idle_t *idle);

Outbox *outbox_new(App *app, uv_loop_t *loop) {
  Outbox *o = xcalloc(1, sizeof *o);
  o->app = app;
  uv_timer_init(loop, &o->timer);
  uv_idle_init(loop, &o->soon);
  uv_timer_init(loop, &o->prune);
  o->timer.data = o->soon.data = o->prune.data = o;
  o->open_handles = 3;
  return o;
}

static void on_closed(uv_handle_t *h) {
  Outbox *o = h->data;
  if (--o->open_handles == 0) free(o);
}

void outbox_close(Outbox *o) {
  if (!o) return;
  uv_close((uv_handle_t *)&o->timer, on_closed);
  uv_close((uv_handle_t *)&o->soon, on_closed);
  uv_close((uv_handle_t *)&o->prune, on_closed);
}

size_t outbox_inflight(const Outbox *o) { return o->inflight; }

int outbox_write(App *app, const char *name, json_t *data) {
  long long id;
  return outbox_write_id(app, name, data, &id);
}

int outbox_write_id(App *app, const char *name, json_t *data, long long *out) {
  LuaHandlerInfo handlers[MAX_HANDLERS];
  size_t n = lua_host_handlers(app->lua, name, handlers, MAX_HANDLERS);
  if (n > MAX_HANDLERS) n = MAX_HANDLERS;
  char *text = json_text(data);
  if (!text) {
    log_error("%s: the event's data cannot be encoded as JSON", name);
    return STORE_ERROR;
  }
  long long id = 0;
  int rc = store_event_insert(app->store, name, text,
                              n ? "pending" : "delivered", &id);
  free(text);
  long long now = isotime_now_ms();
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = store_delivery_insert(app->store, id, handlers[i].name,
                               handlers[i].max_attempts, now);
  if (rc == 0) {
    log_info("Processing %s which has %zu subscribers", name, n);
    metrics_event_emitted(name);
    *out = id;
  }
  return rc;
}

int outbox_emit(App *app, const char *name, json_t *data) {
  if (store_begin(app->store)) return STORE_ERROR;
  if (outbox_write(app, name, data) || store_commit(app->store)) {
    store_rollback(app->store);
    return STORE_ERROR;
  }
  outbox_kick(app->outbox);
  return 0;
}

/* Events walked per transaction, and transactions per timer callback. */
#define PRUNE_CHUNK 500
#define PRUNE_ROUNDS 10

static uint64_t prune_interval(const Outbox *o) {
  long long half = o->retention_ms / 2;
  return (uint64_t)(half < 60000 ? (half > 100 ? half : 100) : 60000);
}

static void on_prune(uv_timer_t *t) {
  Outbox *o = t->data;
  Store *s = o->app->store;
  char cutoff[32];
  isotime_format(isotime_now_ms() - o->retention_ms, cutoff);
  long long cursor = 0, total = 0;
  bool reached = false;
  for (int round = 0; round < PRUNE_ROUNDS && !reached; round++) {
    long long last = cursor, deleted = 0;
    if (store_begin(s) ||
        store_event_prune(s, cursor, cutoff, PRUNE_CHUNK, &last, &deleted,
                          &reached) ||
        store_commit(s)) {
      store_rollback(s);
      break;
    }
    total += deleted;
    cursor = last;
  }
  if (total)
    log_info("retention: deleted %lld delivered events created before %s",
             total, cutoff);
  /* More to walk: go on soon, after the loop has served what waits. */
  uv_timer_start(&o->prune, on_prune, reached ? prune_interval(o) : 10, 0);
}

void outbox_set_retention(Outbox *o, long long ms) {
  o->retention_ms = ms;
  if (ms <= 0) {
    uv_timer_stop(&o->prune);
    return;
  }
  uv_timer_start(&o->prune, on_prune, prune_interval(o), 0);
  /* Pruning is housekeeping: it never keeps the loop running. */
  uv_unref((uv_handle_t *)&o->prune);
}

void outbox_kick(Outbox *o) {
  /* Not a zero timer: libuv runs a timer restarted from a timer callback in
   * the same pass, which would let a chain of quick handlers starve I/O. */
  if (!o->stopping) uv_idle_start(&o->soon, on_soon);
}

static void on_soon(uv_idle_t *idle) {
  uv_idle_stop(idle);
  on_timer(&((Outbox *)idle->data)->timer);
}

/* Arms the timer for the earliest pending delivery. */
static void rearm(Outbox *o) {
  long long next = 0;
  bool any = false;
  if (o->stopping || store_delivery_next(o->app->store, &next, &any) || !any)
    return;
  long long delay = next - isotime_now_ms();
  if (delay <= 0)
    outbox_kick(o);
  else
    uv_timer_start(&o->timer, on_timer, (uint64_t)delay, 0);
}

static long long backoff_ms(long long attempts) {
  long long ms = 1000;
  for (long long i = 1; i < attempts && ms < MAX_BACKOFF_MS; i++) ms *= 2;
  return ms < MAX_BACKOFF_MS ? ms : MAX_BACKOFF_MS;
}

/* Records the outcome of one run in a transaction of its own. */
static void record(Outbox *o, Run *r, bool ok, bool retry, const char *err) {
  Store *s = o->app->store;
  long long now = isotime_now_ms();
  long long attempts = r->attempts + 1;
  const char *status = "delivered";
  long long next_at = now;
  if (!ok && o->stopping) {
    /* Cut short by the shutdown: not the handler's fault, so it does not
     * count; the lease is released for the next start. */
    attempts = r->attempts;
    status = "pending";
    err = NULL;
  } else if (!ok && (attempts >= r->max_attempts || !retry)) {
    status = "dead";
    metrics_event_outcome(r->event, "dead");
    log_error("delivery of %s #%lld to %s is dead after %lld attempts%s: %s",
              r->event, r->event_id, r->handler, attempts,
              retry ? "" : " (the handler asked not to retry)", err);
  } else if (!ok) {
    status = "pending";
    next_at = now + backoff_ms(attempts);
    metrics_event_outcome(r->event, "failed");
    log_warn(
        "delivery of %s #%lld to %s failed (attempt %lld of %lld), "
        "retrying in %lld ms: %s",
        r->event, r->event_id, r->handler, attempts, r->max_attempts,
        next_at - now, err);
  }
  if (store_begin(s) ||
      store_delivery_update(s, r->event_id, r->handler, status, attempts,
                            next_at, ok ? NULL : err) ||
      store_event_refresh(s, r->event_id, ok ? NULL : err) || store_commit(s)) {
    /* The lease runs out and the delivery is retried: at least once. */
    store_rollback(s);
    log_error("delivery of %s #%lld to %s: its outcome could not be stored",
              r->event, r->event_id, r->handler);
  }
}

static void on_done(void *arg, bool ok, bool retry, const char *err) {
  Run *r = arg;
  Outbox *o = r->outbox;
  metrics_handler(r->handler, (double)(uv_hrtime() - r->started_ns) / 1e9);
  if (ok) metrics_event_outcome(r->event, "delivered");
  record(o, r, ok, retry, err);
  free(r->event);
  free(r->handler);
  free(r);
  o->inflight--;
  if (o->stopping) {
    if (o->inflight == 0 && o->idle) {
      void (*idle)(void *) = o->idle;
      o->idle = NULL;
      idle(o->idle_arg);
    }
    return;
  }
  /* Not outbox_poll directly: this may run inside lua_host_run. */
  outbox_kick(o);
}

/* Starts the deliveries that are due, as many as there is room for. */
static void on_timer(uv_timer_t *t) {
  Outbox *o = t->data;
  App *app = o->app;
  if (o->stopping || o->inflight >= OUTBOX_MAX_INFLIGHT) return;
  long long room = (long long)(OUTBOX_MAX_INFLIGHT - o->inflight);
  long long now = isotime_now_ms();
  DueDelivery *due = NULL;
  size_t n = 0;
  if (store_delivery_due(app->store, now, room, &due, &n)) {
    uv_timer_start(&o->timer, on_timer, 1000, 0); /* try again later */
    return;
  }
  long long timeout = lua_host_options(app->lua)->handler_timeout;
  /* Lease them all in one transaction before any runs. */
  int rc = store_begin(app->store);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = store_delivery_lease(app->store, due[i].event_id, due[i].handler,
                              now + timeout + LEASE_MARGIN_MS);
  if (rc == 0) rc = store_commit(app->store);
  if (rc) {
    store_rollback(app->store);
    n = 0;
    uv_timer_start(&o->timer, on_timer, 1000, 0);
  }
  for (size_t i = 0; i < n; i++) {
    DueDelivery *d = &due[i];
    Run *r = xcalloc(1, sizeof *r);
    r->outbox = o;
    r->event_id = d->event_id;
    r->event = d->event;
    r->handler = d->handler;
    r->attempts = d->attempts;
    r->max_attempts = d->max_attempts;
    r->started_ns = uv_hrtime();
    d->event = d->handler = NULL;
    o->inflight++;
    rc = lua_host_run(app->lua, r->event, r->handler, d->data,
                      (uint64_t)timeout, on_done, r);
    if (rc == LUA_HOST_NO_HANDLER)
      on_done(r, false, true,
              "no handler of that name is subscribed to the event "
              "(was plugin.lua changed?)");
    else if (rc)
      on_done(r, false, false, "the event's data is not valid JSON");
  }
  for (size_t i = 0; i < n; i++) due_delivery_clear(&due[i]);
  free(due);
  if ((long long)n == room) return; /* full: each completion kicks */
  rearm(o);
}

void outbox_stop(Outbox *o, void (*idle)(void *), void *arg) {
  o->stopping = true;
  uv_timer_stop(&o->timer);
  uv_idle_stop(&o->soon);
  uv_timer_stop(&o->prune);
  if (o->inflight == 0) {
    idle(arg);
    return;
  }
  o->idle = idle;
  o->idle_arg = arg;
}
