#include "engine.h"

#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "isotime.h"
#include "log.h"
#include "lua_host.h"
#include "metrics.h"
#include "outbox.h"
#include "stock.h"
#include "store.h"
#include "xmalloc.h"

/* Most checks run in one timer callback; the rest wait for the next loop
 * iteration, so that HTTP is served in between. */
#define CHECKS_PER_TICK 16
/* Most subscriptions one transaction of a check notifies when it notifies
 * every subscriber: a variant with 100,000 of them is notified in chunks of
 * this many (about 30 ms each), with the loop serving requests between. */
#define CHECK_CHUNK 10000

struct Engine {
  App *app;
  uv_timer_t timer; /* the earliest future check */
  uv_idle_t soon;   /* checks due now, after the loop has polled for I/O */
  int open_handles;
};

static void run_due(Engine *e);
static void on_timer(uv_timer_t *t) { run_due(t->data); }
static void on_soon(uv_idle_t *idle) {
  uv_idle_stop(idle);
  run_due(idle->data);
}

Engine *engine_new(App *app, uv_loop_t *loop) {
  Engine *e = xcalloc(1, sizeof *e);
  e->app = app;
  uv_timer_init(loop, &e->timer);
  uv_idle_init(loop, &e->soon);
  e->timer.data = e->soon.data = e;
  e->open_handles = 2;
  return e;
}

static void on_closed(uv_handle_t *h) {
  Engine *e = h->data;
  if (--e->open_handles == 0) free(e);
}

void engine_close(Engine *e) {
  if (!e) return;
  uv_close((uv_handle_t *)&e->timer, on_closed);
  uv_close((uv_handle_t *)&e->soon, on_closed);
}

int engine_schedule_check(App *app, const char *variant_id) {
  bool any = false;
  int rc = store_subscription_any(app->store, variant_id, &any);
  if (rc || !any) return rc;
  long long delay = lua_host_options(app->lua)->trigger_delay;
  return store_check_schedule(app->store, variant_id, isotime_now_ms() + delay,
                              false);
}

void engine_rearm(Engine *e) {
  long long due = 0;
  bool any = false;
  if (store_check_next(e->app->store, &due, &any) || !any) {
    uv_timer_stop(&e->timer);
    return;
  }
  long long delay = due - isotime_now_ms();
  uv_timer_stop(&e->timer);
  if (delay <= 0)
    uv_idle_start(&e->soon, on_soon);
  else
    uv_timer_start(&e->timer, on_timer, (uint64_t)delay, 0);
}

int engine_scope_quantity(App *app, const Variant *v, const char *channel,
                          long long *quantity) {
  if (!channel || !*channel || !v->has_levels) {
    *quantity = stock_quantity(v);
    return 0;
  }
  return store_channel_quantity(app->store, v->id, channel, quantity);
}

/* Notifies the subscribers of one scope (`channel` "" for unscoped) whose
 * quantity is `quantity`. Inside the check's transaction. */
static int notify_scope(App *app, const Variant *v, const char *channel,
                        long long allowed, const char *now, long long *sent,
                        bool *more) {
  const Options *o = lua_host_options(app->lua);
  *sent = 0;
  *more = true;
  while (*more && *sent < allowed) {
    long long take = allowed - *sent;
    if (take > o->batch_size) take = o->batch_size;
    json_t *emails = NULL;
    int rc = store_subscription_take(app->store, v->id, channel, take, now,
                                     &emails, more);
    if (rc) return rc;
    size_t n = json_array_size(emails);
    if (n == 0) {
      json_decref(emails);
      break;
    }
    json_t *data =
        json_pack("{s:s, s:o}", "variant_id", v->id, "emails", emails);
    if (*channel)
      json_object_set_new(data, "sales_channel_id", json_string(channel));
    rc = outbox_write(app, "restock-notification.restocked", data);
    json_decref(data);
    if (rc) return rc;
    metrics_emails_notified(n);
    *sent += (long long)n;
  }
  return 0;
}

int engine_run_check(App *app, const char *variant_id) {
  Store *s = app->store;
  const Options *o = lua_host_options(app->lua);
  Variant v;
  memset(&v, 0, sizeof v);
  json_t *scopes = NULL;
  long long total = 0;
  int rc = store_begin(s);
  if (rc) return rc;
  rc = store_check_delete(s, variant_id);
  if (rc == 0) {
    rc = store_variant_get(s, variant_id, &v);
    if (rc == STORE_NOT_FOUND)
      rc = 0; /* deleted since: nothing to do */
    else if (rc == 0)
      rc = store_subscription_scopes(s, variant_id, &scopes);
  }
  char now[32];
  isotime_now(now);
  bool throttled = o->notify_per_unit > 0, unfinished = false;
  size_t i;
  json_t *scope;
  json_array_foreach(scopes, i, scope) {
    if (rc) break;
    const char *channel = json_string_value(scope);
    long long quantity = 0;
    rc = engine_scope_quantity(app, &v, channel, &quantity);
    if (rc || !stock_restocked(quantity, o->inventory_required)) continue;
    /* Unthrottled, a check notifies everyone, CHECK_CHUNK at a time: each
     * chunk moves its subscriptions and writes their events in one
     * transaction, and the check stays scheduled until the last, so a crash
     * between chunks notifies nobody twice and forgets nobody. The next
     * chunk judges the stock again. */
    long long allowed = throttled
                            ? stock_notify_limit(quantity, o->notify_per_unit)
                            : CHECK_CHUNK - total;
    long long sent = 0;
    bool more = false;
    if (allowed > 0)
      rc = notify_scope(app, &v, channel, allowed, now, &sent, &more);
    else
      more = true;
    total += sent;
    if (rc == 0 && more && throttled) {
      /* Throttled, with shoppers still waiting: look again later. */
      rc = store_check_schedule(s, variant_id,
                                isotime_now_ms() + o->notify_interval, true);
    } else if (rc == 0 && more) {
      unfinished = true;
    }
  }
  if (rc == 0 && unfinished)
    rc = store_check_schedule(s, variant_id, isotime_now_ms(), true);
  if (rc == 0) rc = store_commit(s);
  if (rc) {
    store_rollback(s);
    log_error("restock check of %s failed; it will be retried", variant_id);
  } else if (total > 0) {
    log_info("restock check of %s: %lld subscriptions notified", variant_id,
             total);
    outbox_kick(app->outbox);
  }
  json_decref(scopes);
  variant_clear(&v);
  return rc;
}

static void run_due(Engine *e) {
  json_t *ids = NULL;
  if (store_check_due(e->app->store, isotime_now_ms(), CHECKS_PER_TICK, &ids)) {
    uv_timer_start(&e->timer, on_timer, 1000, 0);
    return;
  }
  size_t i;
  json_t *id;
  bool failed = false;
  json_array_foreach(ids, i, id) {
    if (engine_run_check(e->app, json_string_value(id))) failed = true;
  }
  json_decref(ids);
  if (failed)
    uv_timer_start(&e->timer, on_timer, 1000, 0);
  else
    engine_rearm(e);
}
