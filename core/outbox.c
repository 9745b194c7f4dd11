#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include "isotime.h"
#include "json_text.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "xmalloc.h"

/* Most handlers one event name can have. */
#define MAX_HANDLERS 64
/* How far past a handler's timeout its lease reaches. */
#define LEASE_MARGIN_MS 5000
/* The longest lease, by default (issue 14): a delivery whose handler may run
 * longer has its lease renewed every third of it while it runs, so that a
 * node that died has its deliveries taken over by the others within this
 * long, whatever handler_timeout is. */
#define LEASE_MAX_MS 15000
/* A claim that found due rows locked by another node's claim looks again
 * this much later rather than at once. */
#define CLAIM_AGAIN_MS 100
/* The longest retry delay: backoff doubles up to this. */
#define MAX_BACKOFF_MS (3600LL * 1000)
/* After a claim or a prune that failed, the next try. */
#define RETRY_MS 1000
/* Events walked per retention transaction, and rounds per unit. */
#define PRUNE_CHUNK 500
#define PRUNE_ROUNDS 10

struct Outbox {
  Domain *d;
  OutboxRunner runner;
  uv_timer_t timer; /* the earliest future delivery */
  uv_idle_t soon;   /* work due now, after the loop has polled for I/O */
  uv_timer_t prune; /* deletes delivered events past their retention */
  uv_timer_t renew; /* renews the leases of the deliveries running here */
  long long retention_ms;
  long long lease_max_ms;
  int open_handles;
  size_t running; /* claimed handler runs not finished (waiting too) */
  size_t bytes;   /* the data of the runs started and not finished */
  /* Claimed runs waiting for room under OUTBOX_MAX_INFLIGHT_BYTES, oldest
   * first (their leases are renewed with the running ones). */
  struct Run *wait_head, *wait_tail;
  bool starting;    /* start_waiting is on the stack */
  size_t recording; /* outcomes being written */
  bool claiming;    /* a claim unit is in flight */
  bool again;       /* kicked while it was */
  bool pruning;
  bool renewing;
  bool stopping;
  bool closing; /* freed once its handles closed and no unit is in flight */
  void (*idle)(void *);
  void *idle_arg;
};

static void on_timer(uv_timer_t *t);
static void on_soon(uv_idle_t *idle);
static void start_waiting(Outbox *o);
static void drop_waiting(Outbox *o);
static void on_renew(uv_timer_t *t);

Outbox *outbox_new(Domain *d, OutboxRunner runner) {
  Outbox *o = xcalloc(1, sizeof *o);
  o->d = d;
  o->runner = runner;
  uv_timer_init(d->loop, &o->timer);
  uv_idle_init(d->loop, &o->soon);
  uv_timer_init(d->loop, &o->prune);
  uv_timer_init(d->loop, &o->renew);
  o->timer.data = o->soon.data = o->prune.data = o->renew.data = o;
  o->open_handles = 4;
  o->lease_max_ms = LEASE_MAX_MS;
  return o;
}

static void maybe_free(Outbox *o) {
  if (o->closing && o->open_handles == 0 && !o->claiming && o->recording == 0 &&
      !o->pruning && !o->renewing)
    free(o);
}

static void on_closed(uv_handle_t *h) {
  Outbox *o = h->data;
  o->open_handles--;
  maybe_free(o);
}

void outbox_close(Outbox *o) {
  if (!o) return;
  o->closing = true;
  o->stopping = true;
  drop_waiting(o);
  uv_close((uv_handle_t *)&o->timer, on_closed);
  uv_close((uv_handle_t *)&o->soon, on_closed);
  uv_close((uv_handle_t *)&o->prune, on_closed);
  uv_close((uv_handle_t *)&o->renew, on_closed);
}

size_t outbox_inflight(const Outbox *o) { return o->running; }

typedef struct {
  Store *s;
  const char *node;
  long long released;
} Recover;

static int recover_fn(StoreTx *tx, void *arg) {
  Recover *r = arg;
  long long now = isotime_now_ms();
  /* A SQLite file serves one server at a time: every lease is ours. */
  if (!store_shared(r->s))
    return store_delivery_release(tx, NULL, now, &r->released);
  /* Issue 14: on a shared database, this node's own leases (a fixed
   * RESTOCK_NODE_ID), and those of its dead predecessors on this host; the
   * leases of other nodes are theirs until they end. */
  int rc = store_delivery_release(tx, r->node, now, &r->released);
  StrList owners = {0};
  if (rc == 0) rc = store_delivery_owners(tx, &owners);
  for (size_t i = 0; rc == 0 && i < owners.n; i++) {
    if (!node_is_dead_here(owners.items[i])) continue;
    long long n = 0;
    rc = store_delivery_release(tx, owners.items[i], now, &n);
    r->released += n;
  }
  strlist_clear(&owners);
  return rc;
}

int outbox_recover(Store *s, const char *node, long long *released) {
  Recover r = {.s = s, .node = node};
  int rc = store_run(s, recover_fn, &r);
  *released = rc == 0 ? r.released : 0;
  return rc;
}

/* ---- writing events (storage side) ----------------------------------------
 */

/* The event's data less emails and subscribers (its values shared). */
static json_t *data_rest(json_t *data) {
  json_t *rest = json_object();
  const char *key;
  json_t *v;
  json_object_foreach(data, key, v) {
    if (strcmp(key, "emails") && strcmp(key, "subscribers"))
      json_object_set(rest, key, v);
  }
  return rest;
}

/* `rest` plus email and subscriber: `entry` when it is the email's, else
 * {email = ...}. */
static json_t *with_subscriber(json_t *rest, const char *email, json_t *entry) {
  json_t *out = json_copy(rest);
  json_t *e = json_object_get(entry, "email");
  json_object_set_new(out, "email", json_string(email));
  if (json_is_object(entry) && json_is_string(e) &&
      strcmp(json_string_value(e), email) == 0)
    json_object_set(out, "subscriber", entry);
  else
    json_object_set_new(out, "subscriber", json_pack("{s:s}", "email", email));
  return out;
}

json_t *outbox_subscriber_data(json_t *data, const char *email) {
  json_t *rest = data_rest(data);
  json_t *subs = json_object_get(data, "subscribers"), *entry = NULL, *s;
  size_t i;
  json_array_foreach(subs, i, s) {
    json_t *e = json_object_get(s, "email");
    if (json_is_string(e) && strcmp(json_string_value(e), email) == 0) {
      entry = s;
      break;
    }
  }
  json_t *out = with_subscriber(rest, email, entry);
  json_decref(rest);
  return out;
}

bool outbox_per_subscriber(const Unit *u, const char *name) {
  const HandlerSpec *handlers[MAX_HANDLERS];
  size_t n = config_handlers(u->cfg, name, handlers, MAX_HANDLERS);
  if (n > MAX_HANDLERS) n = MAX_HANDLERS;
  for (size_t i = 0; i < n; i++)
    if (handlers[i]->each == EACH_SUBSCRIBER) return true;
  return false;
}

int outbox_write_text(StoreTx *tx, Unit *u, const char *name, const char *text,
                      const char *variant_id, size_t nemails,
                      const char *const *emails, char *const *shares,
                      long long id, long long *out_id) {
  const HandlerSpec *handlers[MAX_HANDLERS];
  size_t n = config_handlers(u->cfg, name, handlers, MAX_HANDLERS);
  if (n > MAX_HANDLERS) n = MAX_HANDLERS;
  char now[ISOTIME_LEN];
  isotime_now(now);
  long long event_id = 0;
  int rc = store_event_insert(tx, id, name, text, n ? "pending" : "delivered",
                              now, variant_id, &event_id);
  long long due = isotime_now_ms();
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const HandlerSpec *h = handlers[i];
    if (h->each == EACH_SUBSCRIBER && emails) {
      for (size_t k = 0; rc == 0 && k < nemails; k++)
        if (emails[k])
          rc = store_delivery_insert(tx, event_id, h->name, emails[k],
                                     h->max_attempts, due, now,
                                     shares ? shares[k] : NULL);
    } else {
      rc = store_delivery_insert(tx, event_id, h->name, "", h->max_attempts,
                                 due, now, NULL);
    }
  }
  if (rc == 0) {
    effects_event(&u->fx, name, n);
    if (out_id) *out_id = event_id;
  }
  return rc;
}

int outbox_write(StoreTx *tx, Unit *u, const char *name, json_t *data,
                 long long id, long long *out_id) {
  char *text = json_text(data);
  if (!text) {
    log_error("%s: the event's data cannot be encoded as JSON", name);
    return RESTOCK_EINVAL;
  }
  json_t *emails = json_object_get(data, "emails");
  json_t *subs = json_object_get(data, "subscribers");
  /* Each shopper's share of the data, made once for every per-subscriber
   * handler: subscribers[k] is emails[k]'s entry. */
  size_t nemails = json_is_array(emails) ? json_array_size(emails) : 0;
  const char **list = NULL;
  char **shares = NULL;
  if (json_is_array(emails)) { /* an empty list: no per-subscriber runs */
    list = xcalloc(nemails ? nemails : 1, sizeof *list);
    for (size_t k = 0; k < nemails; k++)
      list[k] = json_string_value(json_array_get(emails, k));
  }
  if (nemails && outbox_per_subscriber(u, name)) {
    shares = xcalloc(nemails, sizeof *shares);
    json_t *rest = data_rest(data);
    for (size_t k = 0; k < nemails; k++) {
      if (!list[k]) continue;
      json_t *share = with_subscriber(rest, list[k], json_array_get(subs, k));
      shares[k] = json_text(share);
      json_decref(share);
    }
    json_decref(rest);
  }
  int rc = outbox_write_text(tx, u, name, text, NULL, nemails, list, shares, id,
                             out_id);
  for (size_t k = 0; shares && k < nemails; k++) free(shares[k]);
  free(shares);
  free(list);
  free(text);
  return rc;
}

/* ---- retrying a dead event ------------------------------------------------
 */

static int retry_fn(StoreTx *tx, void *arg) {
  RetryCall *c = arg;
  int rc = store_event_retry(tx, c->event_id, isotime_now_ms(), &c->requeued);
  if (rc == 0 && c->requeued) effects_kick(&c->unit.fx);
  return rc;
}

static void retry_finish(Unit *u, int status) {
  RetryCall *c = (RetryCall *)u;
  c->done(c, status);
}

void outbox_retry(Domain *d, RetryCall *c) {
  c->requeued = 0;
  unit_write(d, &c->unit, retry_fn, retry_finish);
}

/* ---- retention
 * ---------------------------------------------------------------- */

typedef struct {
  Unit unit;
  Outbox *o;
  long long retention_ms;
  long long lease_ms;
  char cutoff[ISOTIME_LEN];
  long long deleted;
  bool reached;
} PruneUnit;

static uint64_t prune_interval(const Outbox *o) {
  long long half = o->retention_ms / 2;
  return (uint64_t)(half < 60000 ? (half > 100 ? half : 100) : 60000);
}

/* The named lease of the pruner: one node at a time walks the outbox. */
#define PRUNE_LEASE "retention"

static int prune_fn(StoreTx *tx, void *arg) {
  PruneUnit *p = arg;
  /* Issue 14: nodes sharing a database would walk and delete the same
   * events. The one holding the lease prunes, and renews it each time; it
   * is free for another once the holder stops pruning (it died). A SQLite
   * file has one node: no lease. */
  if (store_shared(p->o->d->store)) {
    long long now = isotime_now_ms();
    bool held = false;
    int lrc = store_lease_claim(tx, PRUNE_LEASE, now, now + p->lease_ms, &held);
    if (lrc || !held) {
      p->reached = true;
      return lrc;
    }
  }
  long long cursor = 0;
  for (int round = 0; round < PRUNE_ROUNDS && !p->reached; round++) {
    long long last = cursor, deleted = 0;
    int rc = store_event_prune(tx, cursor, p->cutoff, PRUNE_CHUNK, &last,
                               &deleted, &p->reached);
    if (rc) return rc;
    p->deleted += deleted;
    cursor = last;
  }
  return 0;
}

static void on_prune(uv_timer_t *t);

static void prune_done(Unit *u, int status) {
  PruneUnit *p = (PruneUnit *)u;
  Outbox *o = p->o;
  o->pruning = false;
  if (status == 0 && p->deleted)
    log_info("retention: deleted %lld delivered events created before %s",
             p->deleted, p->cutoff);
  bool reached = status != 0 || p->reached;
  free(p);
  if (o->closing) {
    maybe_free(o);
    return;
  }
  if (o->stopping || o->retention_ms <= 0) return;
  /* More to walk: go on soon, after what else waits for the store. */
  uv_timer_start(&o->prune, on_prune,
                 status    ? RETRY_MS
                 : reached ? prune_interval(o)
                           : 10,
                 0);
}

static void on_prune(uv_timer_t *t) {
  Outbox *o = t->data;
  if (o->pruning || o->stopping) return;
  PruneUnit *p = xcalloc(1, sizeof *p);
  p->o = o;
  p->retention_ms = o->retention_ms;
  p->lease_ms = 3 * (long long)prune_interval(o) + 5000;
  isotime_format(isotime_now_ms() - o->retention_ms, p->cutoff);
  o->pruning = true;
  unit_write(o->d, &p->unit, prune_fn, prune_done);
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

/* ---- claiming and running --------------------------------------------------
 */

void outbox_kick(Outbox *o) {
  if (o->stopping || o->closing) return;
  if (o->claiming) {
    o->again = true;
    return;
  }
  /* Not a zero timer: libuv runs a timer restarted from a timer callback in
   * the same pass, which would let a chain of quick handlers starve I/O. */
  uv_idle_start(&o->soon, on_soon);
}

static void on_soon(uv_idle_t *idle) {
  uv_idle_stop(idle);
  on_timer(&((Outbox *)idle->data)->timer);
}

typedef struct {
  Unit unit;
  Outbox *o;
  long long room;
  long long timeout_ms;
  long long lease_ms;
  long long now; /* when it claimed */
  DueDelivery *due;
  size_t n;
  long long next_at; /* the earliest pending delivery after the claim */
  bool any_next;
} ClaimUnit;

/* A delivery's lease: past the handler's timeout, but at most lease_max_ms
 * (then renewed while it runs). */
static long long lease_ms(const Outbox *o, long long timeout_ms) {
  long long ms = timeout_ms + LEASE_MARGIN_MS;
  return ms < o->lease_max_ms ? ms : o->lease_max_ms;
}

static int claim_fn(StoreTx *tx, void *arg) {
  ClaimUnit *c = arg;
  long long now = isotime_now_ms();
  c->now = now;
  /* The handlers this node runs, for a shared database's claim. */
  char *handlers = config_handlers_json(c->unit.cfg, false);
  int rc = store_delivery_claim(tx, now, c->room, now + c->lease_ms, handlers,
                                &c->due, &c->n);
  if (rc == 0)
    rc = store_delivery_next(tx, handlers, &c->next_at, &c->any_next);
  free(handlers);
  return rc;
}

/* One delivery being run. */
typedef struct Run {
  Unit unit; /* the outcome's write */
  Outbox *o;
  long long event_id;
  char *event;
  char *handler;
  char *subscriber;
  long long attempts; /* before this run */
  long long max_attempts;
  uint64_t started_ns;
  /* The outcome. */
  char *status;
  long long new_attempts;
  long long next_at;
  char *error;
  /* The outcome is counted in the metrics once it is stored, so /metrics
   * never runs ahead of the database; and only under this node's lease
   * (issue 14), so that no two nodes count one. */
  const char *outcome; /* "delivered", "failed", "dead" or NULL */
  bool kept;
  /* Before it starts: its data and timeout, while it waits for room. */
  char *data;
  uint64_t timeout_ms;
  size_t bytes; /* of its data; in Outbox.bytes while it runs */
  struct Run *next_waiting;
} Run;

static void run_free(Run *r) {
  free(r->data);
  free(r->event);
  free(r->handler);
  free(r->subscriber);
  free(r->error);
  free(r->status);
  free(r);
}

/* Claimed runs still waiting when the outbox closes never ran: their leases
 * are released at the next start. */
static void drop_waiting(Outbox *o) {
  while (o->wait_head) {
    Run *r = o->wait_head;
    o->wait_head = r->next_waiting;
    o->running--;
    run_free(r);
  }
  o->wait_tail = NULL;
}

static void maybe_idle(Outbox *o) {
  if (o->stopping && o->running == 0 && o->recording == 0 && !o->claiming &&
      o->idle) {
    void (*idle)(void *) = o->idle;
    o->idle = NULL;
    idle(o->idle_arg);
  }
}

static int record_fn(StoreTx *tx, void *arg) {
  Run *r = arg;
  char now[ISOTIME_LEN];
  isotime_now(now);
  bool kept = false;
  int rc = store_delivery_finish(tx, r->event_id, r->handler, r->subscriber,
                                 r->status, r->new_attempts, r->next_at,
                                 r->error, now, &kept);
  /* A lease another node took over after ours ran out: its outcome is
   * that node's to record. */
  if (rc == 0 && kept)
    rc = store_event_finish(tx, r->event_id, r->new_attempts, r->error);
  r->kept = kept;
  return rc;
}

static void record_done(Unit *u, int status) {
  Run *r = (Run *)u;
  Outbox *o = r->o;
  if (status)
    /* The lease runs out and the delivery runs again: at least once. */
    log_error("delivery of %s #%lld to %s: its outcome could not be stored",
              r->event, r->event_id, r->handler);
  else if (r->kept && r->outcome)
    metrics_event_outcome(r->event, r->outcome);
  o->recording--;
  run_free(r);
  if (o->closing)
    maybe_free(o);
  else if (o->stopping)
    maybe_idle(o);
  else
    outbox_kick(o);
}

static long long backoff_ms(long long attempts) {
  long long ms = 1000;
  for (long long i = 1; i < attempts && ms < MAX_BACKOFF_MS; i++) ms *= 2;
  return ms < MAX_BACKOFF_MS ? ms : MAX_BACKOFF_MS;
}

/* The " (subscriber ...)" of a log line about a per-subscriber delivery. */
static void subscriber_note(const Run *r, char *out, size_t len) {
  if (r->subscriber && *r->subscriber)
    snprintf(out, len, " (subscriber %s)", r->subscriber);
  else
    out[0] = '\0';
}

static void on_run_done(void *arg, bool ok, bool retry, const char *err);

/* Hands one claimed delivery to the runner. */
static void start_run(Outbox *o, Run *r) {
  r->started_ns = uv_hrtime();
  o->bytes += r->bytes;
  OutboxRun run = {.event = r->event,
                   .handler = r->handler,
                   .subscriber = r->subscriber,
                   .data = r->data ? r->data : "null",
                   .event_id = r->event_id,
                   .attempts = r->attempts,
                   .timeout_ms = r->timeout_ms};
  int rc = o->stopping ? RESTOCK_EUNAVAIL
                       : o->runner.run(o->runner.ctx, &run, on_run_done, r);
  /* The runner copied what it keeps. */
  free(r->data);
  r->data = NULL;
  if (rc == RESTOCK_ENOTFOUND)
    on_run_done(r, false, true,
                "no handler of that name is subscribed to the event "
                "(was plugin.lua changed?)");
  else if (rc == RESTOCK_EUNAVAIL)
    on_run_done(r, false, true, "the server is stopping");
  else if (rc)
    on_run_done(r, false, false, "the event's data is not valid JSON");
}

/* Starts the waiting deliveries, oldest first, while the data of those
 * running stays under OUTBOX_MAX_INFLIGHT_BYTES (one may always run); a
 * server that stops ends them all without running them. */
static void start_waiting(Outbox *o) {
  if (o->starting) return; /* the outer call goes on */
  o->starting = true;
  while (o->wait_head) {
    Run *r = o->wait_head;
    size_t need = r->bytes;
    if (!o->stopping && o->bytes > 0 &&
        o->bytes + need > OUTBOX_MAX_INFLIGHT_BYTES)
      break;
    o->wait_head = r->next_waiting;
    if (!o->wait_head) o->wait_tail = NULL;
    r->next_waiting = NULL;
    start_run(o, r);
  }
  o->starting = false;
}

static void on_run_done(void *arg, bool ok, bool retry, const char *err) {
  Run *r = arg;
  Outbox *o = r->o;
  metrics_handler(r->handler, (double)(uv_hrtime() - r->started_ns) / 1e9);
  long long now = isotime_now_ms();
  char note[300];
  subscriber_note(r, note, sizeof note);
  const char *status = "delivered";
  r->new_attempts = r->attempts + 1;
  r->next_at = now;
  /* The outcome is counted (metrics_event_outcome) once it is stored, in
   * record_done, so /metrics never runs ahead of the database. */
  if (ok) {
    r->outcome = "delivered";
    err = NULL;
  } else if (o->stopping) {
    /* Cut short by the shutdown: not the handler's fault, so it does not
     * count; the lease is released for the next start. */
    r->new_attempts = r->attempts;
    status = "pending";
    err = NULL;
  } else if (r->new_attempts >= r->max_attempts || !retry) {
    status = "dead";
    r->outcome = "dead";
    log_error("delivery of %s #%lld to %s%s is dead after %lld attempts%s: %s",
              r->event, r->event_id, r->handler, note, r->new_attempts,
              retry ? "" : " (the handler asked not to retry)", err);
  } else {
    status = "pending";
    r->next_at = now + backoff_ms(r->new_attempts);
    r->outcome = "failed";
    log_warn(
        "delivery of %s #%lld to %s%s failed (attempt %lld of %lld), "
        "retrying in %lld ms: %s",
        r->event, r->event_id, r->handler, note, r->new_attempts,
        r->max_attempts, r->next_at - now, err);
  }
  r->status = xstrdup(status);
  r->error = err ? xstrdup(err) : NULL;
  o->running--;
  o->bytes -= r->bytes;
  r->bytes = 0;
  o->recording++;
  unit_write(o->d, &r->unit, record_fn, record_done);
  start_waiting(o);
}

static void claim_done(Unit *u, int status) {
  ClaimUnit *c = (ClaimUnit *)u;
  Outbox *o = c->o;
  o->claiming = false;
  if (o->closing) {
    /* Their leases are released at the next start. */
    for (size_t i = 0; i < c->n; i++) due_delivery_clear(&c->due[i]);
    free(c->due);
    free(c);
    maybe_free(o);
    return;
  }
  if (status) {
    if (!o->stopping) uv_timer_start(&o->timer, on_timer, RETRY_MS, 0);
  } else {
    for (size_t i = 0; i < c->n; i++) {
      DueDelivery *d = &c->due[i];
      Run *r = xcalloc(1, sizeof *r);
      r->o = o;
      r->event_id = d->event_id;
      r->event = d->event;
      r->handler = d->handler;
      r->subscriber = d->subscriber;
      r->attempts = d->attempts;
      r->max_attempts = d->max_attempts;
      r->data = d->data;
      r->bytes = d->data ? strlen(d->data) : 0;
      r->timeout_ms = (uint64_t)c->timeout_ms;
      d->event = d->handler = d->subscriber = d->data = NULL;
      o->running++;
      if (o->wait_tail)
        o->wait_tail->next_waiting = r;
      else
        o->wait_head = r;
      o->wait_tail = r;
    }
    start_waiting(o);
    if (!o->stopping && c->any_next && (long long)c->n < c->room) {
      long long delay = c->next_at - isotime_now_ms();
      /* Issue 14: due rows this claim did not get were being claimed by
       * another node (SKIP LOCKED): they are leased once it commits, so
       * look again shortly, not at once. One server never sees this. */
      if (c->n == 0 && c->next_at <= c->now) delay = CLAIM_AGAIN_MS;
      if (delay <= 0)
        o->again = true;
      else
        uv_timer_start(&o->timer, on_timer, (uint64_t)delay, 0);
    }
    if (o->running > 0 && !uv_is_active((uv_handle_t *)&o->renew)) {
      uint64_t every =
          (uint64_t)(c->lease_ms / 3 > 100 ? c->lease_ms / 3 : 100);
      uv_timer_start(&o->renew, on_renew, every, every);
    }
    /* A full claim may have left more due: each completion kicks. */
  }
  for (size_t i = 0; i < c->n; i++) due_delivery_clear(&c->due[i]);
  free(c->due);
  free(c);
  if (o->stopping) {
    maybe_idle(o);
    return;
  }
  if (o->again) {
    o->again = false;
    outbox_kick(o);
  }
}

/* ---- renewing leases
 * --------------------------------------------------------- */

typedef struct {
  Unit unit;
  Outbox *o;
  long long until;
} RenewUnit;

static int renew_fn(StoreTx *tx, void *arg) {
  RenewUnit *r = arg;
  long long n = 0;
  return store_delivery_renew(tx, r->until, &n);
}

static void renew_done(Unit *u, int status) {
  RenewUnit *r = (RenewUnit *)u;
  Outbox *o = r->o;
  o->renewing = false;
  if (status)
    log_warn("the leases of the running deliveries could not be renewed: %s",
             restock_strerror(status));
  free(r);
  if (o->closing) maybe_free(o);
}

/* Every third of a lease while handlers run: one statement renews every
 * lease this node holds (its running deliveries), so a handler may run
 * longer than a lease while a node that dies loses them soon. */
static void on_renew(uv_timer_t *t) {
  Outbox *o = t->data;
  if (o->running == 0 || o->closing) {
    uv_timer_stop(t);
    return;
  }
  if (o->renewing) return;
  RenewUnit *r = xcalloc(1, sizeof *r);
  r->o = o;
  r->until =
      isotime_now_ms() + lease_ms(o, o->d->config->options.handler_timeout);
  o->renewing = true;
  unit_write(o->d, &r->unit, renew_fn, renew_done);
}

void outbox_set_lease_max(Outbox *o, long long ms) {
  if (ms > 0) o->lease_max_ms = ms;
}

void outbox_note_due(Outbox *o, long long at_ms) {
  if (o->stopping || o->closing || o->claiming) return;
  long long delay = at_ms - isotime_now_ms();
  if (delay <= 0) {
    outbox_kick(o);
    return;
  }
  if (uv_is_active((uv_handle_t *)&o->timer) &&
      uv_timer_get_due_in(&o->timer) <= (uint64_t)delay)
    return;
  uv_timer_start(&o->timer, on_timer, (uint64_t)delay, 0);
}

/* Claims the deliveries that are due, as many as there is room for. */
static void on_timer(uv_timer_t *t) {
  Outbox *o = t->data;
  if (o->stopping || o->claiming) return;
  if (o->running >= OUTBOX_MAX_INFLIGHT) return; /* each completion kicks */
  ClaimUnit *c = xcalloc(1, sizeof *c);
  c->o = o;
  c->room = (long long)(OUTBOX_MAX_INFLIGHT - o->running);
  c->timeout_ms = o->d->config->options.handler_timeout;
  c->lease_ms = lease_ms(o, c->timeout_ms);
  o->claiming = true;
  o->again = false;
  uv_timer_stop(&o->timer);
  unit_write(o->d, &c->unit, claim_fn, claim_done);
}

void outbox_stop(Outbox *o, void (*idle)(void *), void *arg) {
  o->stopping = true;
  uv_timer_stop(&o->timer);
  uv_idle_stop(&o->soon);
  uv_timer_stop(&o->prune);
  o->idle = idle;
  o->idle_arg = arg;
  start_waiting(o); /* ends those waiting: they never ran */
  maybe_idle(o);
}
