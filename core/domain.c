#include "domain.h"

#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "utf8.h"
#include "xmalloc.h"

void domain_set_config(Domain *d, Config *c) {
  config_unref(d->config);
  d->config = c;
}

void effects_event(Effects *fx, const char *name, size_t handlers) {
  if (fx->nevents == fx->cap) {
    fx->cap = fx->cap ? fx->cap * 2 : 4;
    fx->events = xrealloc(fx->events, fx->cap * sizeof *fx->events);
  }
  fx->events[fx->nevents].name = xstrdup(name);
  fx->events[fx->nevents].handlers = handlers;
  fx->nevents++;
}

void effects_kick(Effects *fx) { fx->kick = true; }

void effects_check(Effects *fx, long long due_ms) {
  if (fx->check_due == 0 || due_ms < fx->check_due) fx->check_due = due_ms;
}

void effects_clear(Effects *fx) {
  for (size_t i = 0; i < fx->nevents; i++) free(fx->events[i].name);
  free(fx->events);
  memset(fx, 0, sizeof *fx);
}

/* On the loop, after the commit: what follows every write. */
static void effects_apply(Domain *d, const Effects *fx) {
  bool deliveries = fx->kick;
  for (size_t i = 0; i < fx->nevents; i++) {
    log_info("Processing %s which has %zu subscribers", fx->events[i].name,
             fx->events[i].handlers);
    metrics_event_emitted(fx->events[i].name);
    if (fx->events[i].handlers) deliveries = true;
  }
  if (fx->emails_notified) metrics_emails_notified(fx->emails_notified);
  if (fx->conversions) metrics_conversions(fx->conversions);
  if (deliveries && d->outbox) outbox_kick(d->outbox);
  if (fx->check_due && d->engine) engine_note_check(d->engine, fx->check_due);
}

static void unit_done(void *arg, int status) {
  Unit *u = arg;
  if (status >= 0) effects_apply(u->d, &u->fx);
  effects_clear(&u->fx);
  config_unref(u->cfg);
  u->cfg = NULL;
  u->finish(u, status);
}

static void prepare(Domain *d, Unit *u, UnitFinish finish) {
  u->d = d;
  u->cfg = config_ref(d->config);
  memset(&u->fx, 0, sizeof u->fx);
  u->finish = finish;
  u->reset = NULL;
  u->work.reset = NULL;
}

/* On the writer, before a replayable unit's fn runs again. */
static void unit_reset(void *arg) {
  Unit *u = arg;
  effects_clear(&u->fx);
  u->reset(u);
}

void unit_write(Domain *d, Unit *u, StoreFn fn, UnitFinish finish) {
  prepare(d, u, finish);
  store_write(d->store, &u->work, fn, unit_done, u);
}

void unit_write_batched(Domain *d, Unit *u, StoreFn fn, StoreBatchFn batch,
                        UnitFinish finish) {
  prepare(d, u, finish);
  store_write_batched(d->store, &u->work, fn, batch, unit_done, u);
}

void unit_write_replayable(Domain *d, Unit *u, StoreFn fn, StoreBatchFn batch,
                           UnitReset reset, UnitFinish finish) {
  prepare(d, u, finish);
  u->reset = reset;
  u->work.reset = unit_reset;
  if (batch)
    store_write_batched(d->store, &u->work, fn, batch, unit_done, u);
  else
    store_write(d->store, &u->work, fn, unit_done, u);
}

void unit_read(Domain *d, Unit *u, StoreFn fn, UnitFinish finish) {
  prepare(d, u, finish);
  store_read(d->store, &u->work, fn, unit_done, u);
}

bool domain_valid_id(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len > DOMAIN_MAX_ID) return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) return false;
  }
  return utf8_valid((const unsigned char *)s, len);
}

int domain_http_status(int status, const char **type) {
  switch (status) {
    case RESTOCK_ENOTFOUND:
      *type = "not_found";
      return 404;
    case RESTOCK_EINVAL:
    case RESTOCK_ERANGE:
      *type = "invalid_data";
      return 400;
    case RESTOCK_ENOTALLOWED:
      *type = "not_allowed";
      return 400;
    case RESTOCK_ECOMMIT:
    case RESTOCK_EUNAVAIL:
    case RESTOCK_EBUSY:
    case RESTOCK_ETIMEDOUT:
      *type = "unexpected_state";
      return 503;
    default:
      *type = "unexpected_state";
      return 500;
  }
}

static int read_fn(StoreTx *tx, void *arg) {
  ReadCall *c = arg;
  return c->fn(tx, c);
}

static void read_finish(Unit *u, int status) {
  ReadCall *c = (ReadCall *)u;
  c->done(c, status);
}

void domain_read(Domain *d, ReadCall *c) {
  unit_read(d, &c->unit, read_fn, read_finish);
}
