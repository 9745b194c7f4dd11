#include "engine.h"

#include <limits.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"
#include "json_text.h"
#include "log.h"
#include "node.h"
#include "outbox.h"
#include "stock.h"
#include "token.h"
#include "xmalloc.h"

/* Most checks one unit starts; the rest wait for the next unit, so that
 * other writes get their turn on the writer in between. */
#define CHECKS_PER_UNIT 16
/* After a unit that failed, the next try. */
#define RETRY_MS 1000
/* After a unit that found a due check another node holds. */
#define CHECK_AGAIN_MS 100

/* Issue 14: where this node's takes of a shared restock go on from, its
 * lane: after the last id its previous unit took. Each node starts its
 * first unit at a random point of the scope and then keeps to its own
 * region, instead of every unit starting at the scope's first row and
 * walking the rows the other nodes' takes hold (1.8 us each, skipped one
 * by one: 20,000 of them at each unit's start with three nodes). */
typedef struct {
  char *variant_id; /* NULL: none */
  char *channel;
  long long after;
} Lane;

static void lane_clear(Lane *l) {
  free(l->variant_id);
  free(l->channel);
  memset(l, 0, sizeof *l);
}

struct Engine {
  Domain *d;
  Lane lane;        /* the loop's copy */
  uv_timer_t timer; /* the earliest future check */
  uv_idle_t soon;   /* checks due now, after the loop has polled for I/O */
  long long armed;  /* the due time the timer is set for; 0: none */
  bool running;     /* a unit of due checks is in flight */
  long long noted;  /* earliest check noted while it was; 0: none */
  bool closing;
  int open_handles;
};

static void run_due(Engine *e);
static void on_timer(uv_timer_t *t) {
  Engine *e = t->data;
  e->armed = 0;
  run_due(e);
}
static void on_soon(uv_idle_t *idle) {
  uv_idle_stop(idle);
  Engine *e = idle->data;
  e->armed = 0;
  run_due(e);
}

Engine *engine_new(Domain *d) {
  Engine *e = xcalloc(1, sizeof *e);
  e->d = d;
  uv_timer_init(d->loop, &e->timer);
  uv_idle_init(d->loop, &e->soon);
  e->timer.data = e->soon.data = e;
  e->open_handles = 2;
  return e;
}

static void maybe_free(Engine *e) {
  if (e->closing && e->open_handles == 0 && !e->running) {
    lane_clear(&e->lane);
    free(e);
  }
}

static void on_closed(uv_handle_t *h) {
  Engine *e = h->data;
  e->open_handles--;
  maybe_free(e);
}

void engine_close(Engine *e) {
  if (!e) return;
  e->closing = true;
  uv_close((uv_handle_t *)&e->timer, on_closed);
  uv_close((uv_handle_t *)&e->soon, on_closed);
}

/* Arms the timer for a check due at `due` unless it is set for earlier. */
static void arm(Engine *e, long long due) {
  if (e->closing) return;
  if (e->running) {
    if (e->noted == 0 || due < e->noted) e->noted = due;
    return;
  }
  if (e->armed && e->armed <= due) return;
  long long delay = due - isotime_now_ms();
  uv_timer_stop(&e->timer);
  e->armed = due;
  if (delay <= 0)
    uv_idle_start(&e->soon, on_soon);
  else
    uv_timer_start(&e->timer, on_timer, (uint64_t)delay, 0);
}

void engine_note_check(Engine *e, long long due_ms) { arm(e, due_ms); }

/* ---- inside units ---------------------------------------------------------
 */

int engine_schedule_check(StoreTx *tx, Unit *u, const char *variant_id) {
  bool any = false;
  int rc = store_subscription_any(tx, variant_id, &any);
  if (rc || !any) return rc;
  long long due = isotime_now_ms() + u->cfg->options.trigger_delay;
  rc = store_check_schedule(tx, variant_id, due, false);
  if (rc == 0) effects_check(&u->fx, due);
  return rc;
}

int engine_scope_quantity(StoreTx *tx, const Variant *v, const char *channel,
                          long long *quantity) {
  if (!channel || !*channel || !v->has_levels) {
    *quantity = stock_quantity(v);
    return 0;
  }
  return store_channel_quantity(tx, v->id, channel, quantity);
}

/* What one check did, for the log line after the commit. */
typedef struct {
  char *variant_id;
  long long notified;
  bool failed;
  bool held; /* shared: what is left, other nodes' takes hold */
} CheckResult;

typedef struct {
  Unit unit;
  Engine *e;
  CheckResult *results;
  size_t nresults;
  long long now; /* when it looked for due checks */
  Lane lane;     /* the engine's lane, then where this unit's ended */
  unsigned long long random; /* where a new lane starts */
  long long next_due;
  bool any_next;
} DueUnit;

/* One taken subscription's entry of the event's `subscribers`, as JSON
 * text: what a sender needs to write to that shopper (their language, the
 * units they wanted, a link to their page and one to unsubscribe). */
static void subscriber_text(Buf *b, const Domain *d,
                            const TakenSubscription *t) {
  char manage[TOKEN_MANAGE_MAX], unsubscribe[TOKEN_LEN + 1];
  token_make_manage(d->token_key, t->email, manage);
  token_make(d->token_key, TOKEN_UNSUBSCRIBE, t->id, unsubscribe);
  buf_puts(b, "{\"email\":");
  json_text_cstring(b, t->email);
  buf_puts(b, ",\"subscribed_at\":");
  json_text_cstring(b, t->created_at);
  buf_puts(b, ",\"manage_token\":");
  json_text_cstring(b, manage);
  buf_puts(b, ",\"unsubscribe_token\":");
  json_text_cstring(b, unsubscribe);
  if (t->locale) {
    buf_puts(b, ",\"locale\":");
    json_text_cstring(b, t->locale);
  }
  if (t->quantity > 0) buf_printf(b, ",\"quantity\":%lld", t->quantity);
  buf_puts(b, "}");
}

/* One restocked event of `taken` (and, for per-subscriber handlers, each
 * shopper's share of it), made ready to write. Its data is JSON text at
 * once, not built as a tree: a chunk of 10,000 subscribers made 60,000
 * jansson values and their frees. */
typedef struct {
  Buf data;
  const char **emails; /* into the TakenList it was made from */
  char **shares;       /* NULL unless per-subscriber */
  size_t n;
} Restocked;

static const char restocked_name[] = "restock-notification.restocked";

static void restocked_make(Restocked *r, Unit *u, const Variant *v,
                           const char *channel, const TakenList *taken) {
  memset(r, 0, sizeof *r);
  bool shared = outbox_per_subscriber(u, restocked_name);
  /* `head`: the data less emails and subscribers, as a share begins. */
  Buf head = {0}, entry = {0};
  Buf *data = &r->data;
  buf_puts(&head, "{\"variant_id\":");
  json_text_cstring(&head, v->id);
  if (*channel) {
    buf_puts(&head, ",\"sales_channel_id\":");
    json_text_cstring(&head, channel);
  }
  buf_append(data, head.data, head.len);
  buf_puts(data, ",\"emails\":[");
  for (size_t i = 0; i < taken->n; i++) {
    if (i) buf_puts(data, ",");
    json_text_cstring(data, taken->items[i].email);
  }
  buf_puts(data, "],\"subscribers\":[");
  r->n = taken->n;
  r->emails = xcalloc(taken->n ? taken->n : 1, sizeof *r->emails);
  r->shares = shared ? xcalloc(taken->n, sizeof *r->shares) : NULL;
  for (size_t i = 0; i < taken->n; i++) {
    const TakenSubscription *t = &taken->items[i];
    r->emails[i] = t->email;
    buf_reset(&entry);
    subscriber_text(&entry, u->d, t);
    if (i) buf_puts(data, ",");
    buf_append(data, entry.data, entry.len);
    if (r->shares) {
      Buf share = {0};
      buf_reserve(&share, head.len + entry.len + strlen(t->email) + 32);
      buf_append(&share, head.data, head.len);
      buf_puts(&share, ",\"email\":");
      json_text_cstring(&share, t->email);
      buf_puts(&share, ",\"subscriber\":");
      buf_append(&share, entry.data, entry.len);
      buf_puts(&share, "}");
      r->shares[i] = buf_steal(&share);
    }
  }
  buf_puts(data, "]}");
  buf_free(&head);
  buf_free(&entry);
}

static void restocked_clear(Restocked *r) {
  for (size_t i = 0; r->shares && i < r->n; i++) free(r->shares[i]);
  free(r->shares);
  free(r->emails);
  buf_free(&r->data);
  memset(r, 0, sizeof *r);
}

/* Writes a made event, and frees it. */
static int restocked_write(StoreTx *tx, Unit *u, const Variant *v,
                           Restocked *r) {
  int rc = outbox_write_text(tx, u, restocked_name, r->data.data, v->id, r->n,
                             r->emails, r->shares, 0, NULL);
  restocked_clear(r);
  return rc;
}

static int by_id(const void *a, const void *b) {
  long long x = ((const TakenSubscription *)a)->id;
  long long y = ((const TakenSubscription *)b)->id;
  return (x > y) - (x < y);
}

/* Shared: a chunk whose take came back short of `limit` has reached the
 * scope's end from this node's lane. It is topped up from the scope's
 * first row, once (*wrapped), and sorted again, so that an event stays
 * whole and oldest first. *resume gets the id the next take starts after
 * (the last of the rows taken last). */
static int top_up(StoreTx *tx, const Variant *v, const char *channel,
                  long long quantity, long long limit, const char *now,
                  bool *wrapped, TakenList *taken, bool *more,
                  long long *resume) {
  if (taken->n > 0) *resume = taken->items[taken->n - 1].id;
  if (*wrapped || (long long)taken->n >= limit) return 0;
  *wrapped = true;
  size_t had = taken->n;
  int rc = store_subscription_take(tx, v->id, channel, quantity,
                                   limit - (long long)had, now, 0, taken, more);
  if (rc == 0 && taken->n > had) {
    *resume = taken->items[taken->n - 1].id;
    if (had > 0) qsort(taken->items, taken->n, sizeof *taken->items, by_id);
  }
  return rc;
}

/* Notifies up to `allowed` subscribers of one scope (`channel` "" for
 * unscoped) whose quantity is `quantity`: those who want no more than it,
 * batch_size to an event. `shared`: other nodes take chunks of the same
 * scope at once (the takes skip each other's rows). */
static int notify_scope(StoreTx *tx, Unit *u, const Variant *v,
                        const char *channel, long long quantity,
                        long long allowed, const char *now, bool shared,
                        long long start, long long *sent, bool *more,
                        long long *last) {
  const Options *o = &u->cfg->options;
  *sent = 0;
  *more = true;
  if (allowed <= 0) return 0;
  TakenList taken = {0};
  long long take = allowed < o->batch_size ? allowed : o->batch_size;
  /* Shared: each take starts after the last one this check took, the
   * first after `start` (this node's lane); past the scope's last row the
   * takes go on from its first (wrapped). */
  long long after = shared ? start : -1;
  bool wrapped = !shared || start <= 0;
  *last = 0;
  int rc = store_take_counts_begin(tx);
  if (rc == 0)
    rc = store_subscription_take(tx, v->id, channel, quantity, take, now, after,
                                 &taken, more);
  if (rc == 0 && shared)
    rc = top_up(tx, v, channel, quantity, take, now, &wrapped, &taken, more,
                &after);
  /* Each chunk's event is made while the next chunk's take runs in the
   * database (store_take_start; on PostgreSQL the two overlap, where they
   * followed each other: the 1,000 tokens and the JSON of a chunk took
   * about as long as its take), and written once that take is read. */
  while (rc == 0 && taken.n > 0) {
    long long total = *sent + (long long)taken.n;
    /* A full chunk that ended the lane's run to the scope's end: the next
     * one starts from the scope's first row. */
    bool wrap = shared && !*more && !wrapped;
    bool again = (*more || wrap) && total < allowed;
    StoreTake next;
    long long from = after;
    if (again && wrap) {
      wrapped = true;
      from = 0;
    }
    if (again) {
      take = allowed - total;
      if (take > o->batch_size) take = o->batch_size;
      store_take_start(tx, v->id, channel, quantity, take, now, from, &next);
    }
    Restocked r;
    restocked_make(&r, u, v, channel, &taken);
    TakenList next_taken = {0};
    bool next_more = false;
    if (again) rc = store_take_finish(tx, &next, &next_taken, &next_more);
    if (rc == 0 && again && shared)
      rc = top_up(tx, v, channel, quantity, take, now, &wrapped, &next_taken,
                  &next_more, &after);
    if (rc == 0) rc = restocked_write(tx, u, v, &r);
    restocked_clear(&r);
    taken_list_clear(&taken);
    if (rc) {
      taken_list_clear(&next_taken);
      return rc;
    }
    *sent = total;
    taken = next_taken;
    if (!again) break;
    *more = next_more;
  }
  if (shared && *sent > 0) *last = after;
  taken_list_clear(&taken);
  if (rc == 0) rc = store_take_counts_end(tx, v->id, channel, *sent);
  return rc;
}

/* Where this node's takes of a shared scope start (0: at its first row):
 * its lane's last id, or for a new lane in a scope more than a unit long a
 * random point of it. No lanes without other nodes alive (`random` 0): one
 * node takes from the first row. */
static int lane_start(StoreTx *tx, const Lane *lane, unsigned long long random,
                      const char *variant_id, const char *channel,
                      long long *start) {
  *start = 0;
  if (!random) return 0;
  if (lane->variant_id && strcmp(lane->variant_id, variant_id) == 0 &&
      strcmp(lane->channel, channel) == 0) {
    *start = lane->after;
    return 0;
  }
  long long first, end;
  int rc = store_subscription_span(tx, variant_id, channel, &first, &end);
  if (rc == 0 && end - first > ENGINE_CHUNK)
    *start = first + (long long)(random % (unsigned long long)(end - first));
  return rc;
}

/* One check, in the caller's savepoint. `budget` is how many subscriptions
 * the unit may still notify; *notified gets how many this check did.
 *
 * `shared` (several nodes on one database, no throttle): every node that
 * finds the check due runs it at once, taking chunks the others do not
 * hold, and the check's row stays until one of them finds nothing left
 * to take (store_check_finish; `due_by` the time the unit looked for due
 * checks). *held is then set when what is left is held by the others'
 * takes, still running: their nodes finish the check. Elsewhere the check
 * runs on one node at a time (its row locked) and is deleted at once. */
static int run_check(StoreTx *tx, Unit *u, const char *variant_id,
                     long long budget, bool shared, long long due_by,
                     Lane *lane, unsigned long long random, long long *notified,
                     bool *held) {
  const Options *o = &u->cfg->options;
  Variant v;
  memset(&v, 0, sizeof v);
  StrList scopes = {0};
  *notified = 0;
  *held = false;
  /* The variant first: with several nodes on one database, a write that
   * reads a variant locks it, and a quantity change locks it before it
   * schedules a check, so taking the two in that order here too keeps two
   * nodes from waiting on each other. A shared check does not lock it: the
   * nodes running it would take turns on it, and each chunk judges the
   * stock as it was when its statement ran. */
  int rc = shared ? store_variant_peek(tx, variant_id, &v)
                  : store_variant_get(tx, variant_id, &v);
  if (rc == RESTOCK_ENOTFOUND) {
    variant_clear(&v);
    /* deleted since */
    return shared ? store_check_finish(tx, variant_id, due_by)
                  : store_check_delete(tx, variant_id);
  }
  if (rc == 0 && !shared) rc = store_check_delete(tx, variant_id);
  if (rc == 0) rc = store_subscription_scopes(tx, variant_id, &scopes);
  char now[ISOTIME_LEN];
  isotime_now(now);
  bool throttled = o->notify_per_unit > 0, unfinished = false;
  for (size_t i = 0; rc == 0 && i < scopes.n; i++) {
    const char *channel = scopes.items[i];
    long long quantity = 0;
    rc = engine_scope_quantity(tx, &v, channel, &quantity);
    if (rc == RESTOCK_ERANGE) rc = 0, quantity = 0; /* judged on the rest */
    if (rc || !stock_restocked(quantity, o->inventory_required)) continue;
    /* Unthrottled, a check notifies everyone, ENGINE_CHUNK at a time; the
     * check stays scheduled until the last chunk, and each chunk judges
     * the stock again. */
    long long allowed = throttled
                            ? stock_notify_limit(quantity, o->notify_per_unit)
                            : budget - *notified;
    long long sent = 0;
    bool more = false;
    long long wants_at_most =
        v.manage_inventory && !v.allow_backorder ? quantity : LLONG_MAX;
    long long start = 0, last = 0;
    if (rc == 0 && shared && allowed > 0)
      rc = lane_start(tx, lane, random, v.id, channel, &start);
    if (rc == 0 && allowed > 0)
      rc = notify_scope(tx, u, &v, channel, wants_at_most, allowed, now, shared,
                        start, &sent, &more, &last);
    else
      more = true;
    if (rc == 0 && last > 0) {
      lane_clear(lane);
      lane->variant_id = xstrdup(v.id);
      lane->channel = xstrdup(channel);
      lane->after = last;
    }
    *notified += sent;
    /* Nothing more this node could take; the others' takes may hold some
     * (or a row an unsubscribe holds, which then stays): the check stays
     * for them. */
    bool others = false;
    if (rc == 0 && shared && !more)
      rc = store_subscription_scope_any(tx, v.id, channel, wants_at_most,
                                        &others);
    if (others) *held = true;
    if (rc == 0 && more && throttled) {
      /* Throttled, with shoppers still waiting: look again later. */
      long long due = isotime_now_ms() + o->notify_interval;
      rc = store_check_schedule(tx, variant_id, due, true);
      if (rc == 0) effects_check(&u->fx, due);
    } else if (rc == 0 && more) {
      unfinished = true;
    }
  }
  if (rc == 0 && unfinished) {
    long long due = isotime_now_ms();
    /* A shared check's row is still there, due. */
    if (!shared) rc = store_check_schedule(tx, variant_id, due, true);
    if (rc == 0) effects_check(&u->fx, due);
  } else if (rc == 0 && shared && !*held) {
    rc = store_check_finish(tx, variant_id, due_by);
  }
  if (rc == 0) u->fx.emails_notified += *notified;
  strlist_clear(&scopes);
  variant_clear(&v);
  return rc;
}

static int due_fn(StoreTx *tx, void *arg) {
  DueUnit *du = arg;
  Unit *u = &du->unit;
  StrList ids = {0};
  du->now = isotime_now_ms();
  bool shared =
      store_shared(u->d->store) && u->cfg->options.notify_per_unit <= 0;
  int rc = shared ? store_check_due_shared(tx, du->now, CHECKS_PER_UNIT, &ids)
                  : store_check_due(tx, du->now, CHECKS_PER_UNIT, &ids);
  if (rc) return rc;
  du->results = xcalloc(ids.n ? ids.n : 1, sizeof *du->results);
  long long total = 0;
  for (size_t i = 0; i < ids.n && total < ENGINE_CHUNK; i++) {
    CheckResult *r = &du->results[du->nresults++];
    r->variant_id = xstrdup(ids.items[i]);
    /* Each check in a savepoint of its own: one that fails is undone (its
     * check row stays, and runs again) without the others. Its effects
     * would be undone with it; they are only ever more checks and events,
     * so a failed check keeps none: the unit's effects are rebuilt below
     * from what committed. */
    Effects saved = u->fx;
    memset(&u->fx, 0, sizeof u->fx);
    if (store_tx_begin(tx)) {
      u->fx = saved;
      r->failed = true;
      continue;
    }
    long long notified = 0;
    rc = run_check(tx, u, ids.items[i], ENGINE_CHUNK - total, shared, du->now,
                   &du->lane, du->random, &notified, &r->held);
    if (rc == 0)
      rc = store_tx_commit(tx); /* which rolls back itself if it fails */
    else
      store_tx_rollback(tx);
    if (rc) {
      rc = 0;
      r->failed = true;
      effects_clear(&u->fx);
      u->fx = saved;
      continue;
    }
    /* Kept: merge this check's effects into the unit's. */
    Effects mine = u->fx;
    u->fx = saved;
    for (size_t k = 0; k < mine.nevents; k++)
      effects_event(&u->fx, mine.events[k].name, mine.events[k].handlers);
    if (mine.check_due) effects_check(&u->fx, mine.check_due);
    u->fx.emails_notified += mine.emails_notified;
    effects_clear(&mine);
    r->notified = notified;
    total += notified;
  }
  strlist_clear(&ids);
  return store_check_next(tx, &du->next_due, &du->any_next);
}

static void due_done(Unit *u, int status) {
  DueUnit *du = (DueUnit *)u;
  Engine *e = du->e;
  e->running = false;
  bool failed = false, others = du->nresults > 0;
  for (size_t i = 0; i < du->nresults; i++) {
    CheckResult *r = &du->results[i];
    if (!r->held || r->notified > 0 || r->failed) others = false;
    if (status == 0 && r->failed) {
      failed = true;
      log_error("restock check of %s failed; it will be retried in %d ms",
                r->variant_id, RETRY_MS);
    } else if (status == 0 && r->notified > 0)
      log_info("restock check of %s: %lld subscriptions notified",
               r->variant_id, r->notified);
    free(r->variant_id);
  }
  if (status)
    log_error("restock checks could not run (%s); retrying in %d ms",
              restock_strerror(status), RETRY_MS);
  free(du->results);
  lane_clear(&e->lane);
  e->lane = du->lane;
  long long noted = e->noted;
  e->noted = 0;
  bool any = status == 0 && du->any_next;
  long long next = du->next_due;
  /* Issue 14: a check that was due but not claimed is being run by another
   * node (its row is locked), or, shared, found nothing to take but what
   * the other nodes' takes hold (theirs to finish): look again shortly
   * rather than at once. One server never sees this. */
  if (any && (du->nresults == 0 || others) && next <= du->now)
    next = isotime_now_ms() + CHECK_AGAIN_MS;
  /* A check that failed stays due: it is not run again at once, or a
   * lasting failure (a statement the database refuses) would spin. */
  if (any && failed && next < isotime_now_ms() + RETRY_MS)
    next = isotime_now_ms() + RETRY_MS;
  free(du);
  if (e->closing) {
    maybe_free(e);
    return;
  }
  if (status) {
    e->armed = isotime_now_ms() + RETRY_MS;
    uv_timer_start(&e->timer, on_timer, RETRY_MS, 0);
    return;
  }
  if (noted && (!any || noted < next)) {
    next = noted;
    any = true;
  }
  /* A check due already (the next chunk of a large restock) is queued at
   * once, not after the loop's next poll: this completion is often handled
   * together with the claim of the events just written, whose handlers
   * then run on the loop, and the writer would wait for them idle. */
  if (any && next <= isotime_now_ms()) {
    uv_timer_stop(&e->timer);
    e->armed = 0;
    run_due(e);
  } else if (any) {
    arm(e, next);
  }
}

static void run_due(Engine *e) {
  if (e->running || e->closing) return;
  DueUnit *du = xcalloc(1, sizeof *du);
  du->e = e;
  /* The lane goes to the unit and comes back with it (due_done). */
  du->lane = e->lane;
  memset(&e->lane, 0, sizeof e->lane);
  /* Where a new lane starts, when other nodes share the database (0: at
   * the scope's first row). */
  if (node_peer_count(e->d->node) > 0 &&
      RAND_bytes((unsigned char *)&du->random, sizeof du->random) == 1)
    du->random |= 1;
  e->running = true;
  unit_write(e->d, &du->unit, due_fn, due_done);
}

/* ---- start ------------------------------------------------------------------
 */

typedef struct {
  Unit unit;
  Engine *e;
  long long due;
  bool any;
} NextUnit;

static int next_fn(StoreTx *tx, void *arg) {
  NextUnit *n = arg;
  return store_check_next(tx, &n->due, &n->any);
}

static void next_done(Unit *u, int status) {
  NextUnit *n = (NextUnit *)u;
  Engine *e = n->e;
  e->running = false;
  long long due = status == 0 && n->any ? n->due : 0;
  if (status) due = isotime_now_ms() + RETRY_MS;
  long long noted = e->noted;
  e->noted = 0;
  free(n);
  if (e->closing) {
    maybe_free(e);
    return;
  }
  if (noted && (!due || noted < due)) due = noted;
  if (due) arm(e, due);
}

void engine_poke(Engine *e) {
  if (e && !e->running && !e->closing) engine_start(e);
}

void engine_start(Engine *e) {
  NextUnit *n = xcalloc(1, sizeof *n);
  n->e = e;
  /* Counted as running so that notes arriving meanwhile are kept. */
  e->running = true;
  unit_read(e->d, &n->unit, next_fn, next_done);
}
