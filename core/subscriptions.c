#include "subscriptions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"
#include "json_text.h"
#include "outbox.h"
#include "stock.h"
#include "token.h"
#include "xmalloc.h"

#define SUBSCRIBED "restock-notification.subscribed"

void subscribe_call_clear(SubscribeCall *c) {
  free(c->sales_channel_id);
  free(c->publishable_key);
  free(c->channel);
  c->sales_channel_id = c->publishable_key = c->channel = NULL;
}

/* Works out the subscription's sales channel, as Medusa does: a key with
 * one channel gives it; a key with several needs the body's channel to be
 * one of them; a channel must exist. Sets c->channel (NULL: unscoped). */
static int resolve_channel(StoreTx *tx, SubscribeCall *c) {
  const char *key = c->publishable_key, *wanted = c->sales_channel_id;
  if (key) {
    StrList channels = {0};
    int rc = store_key_channels(tx, key, &channels);
    if (rc == RESTOCK_ENOTFOUND) {
      snprintf(c->message, sizeof c->message,
               "Publishable API key %.200s was not found", key);
      return RESTOCK_EINVAL;
    }
    if (rc) return rc;
    if (!wanted && channels.n == 1) {
      c->channel = xstrdup(channels.items[0]);
    } else if (!wanted) {
      snprintf(c->message, sizeof c->message,
               channels.n ? "sales_channel_id is required: publishable API "
                            "key %.200s covers several sales channels"
                          : "Publishable API key %.200s has no sales channel",
               key);
      rc = RESTOCK_EINVAL;
    } else if (strlist_has(&channels, wanted)) {
      c->channel = xstrdup(wanted);
    } else {
      snprintf(c->message, sizeof c->message,
               "Sales channel %.200s is not covered by publishable API key "
               "%.200s",
               wanted, key);
      rc = RESTOCK_EINVAL;
    }
    strlist_clear(&channels);
    return rc;
  }
  if (!wanted) return 0;
  bool exists = false;
  int rc = store_channel_exists(tx, wanted, &exists);
  if (rc) return rc;
  if (!exists) {
    snprintf(c->message, sizeof c->message,
             "Sales channel with id: %.200s was not found", wanted);
    return RESTOCK_EINVAL;
  }
  c->channel = xstrdup(wanted);
  return 0;
}

static int subscribe_fn(StoreTx *tx, void *arg) {
  SubscribeCall *c = arg;
  int rc = resolve_channel(tx, c);
  if (rc) return rc;
  Variant v;
  memset(&v, 0, sizeof v);
  rc = store_variant_get(tx, c->variant_id, &v);
  if (rc == RESTOCK_ENOTFOUND)
    snprintf(c->message, sizeof c->message,
             "Variant with id: %.300s was not found", c->variant_id);
  long long quantity = 0;
  if (rc == 0) rc = engine_scope_quantity(tx, &v, c->channel, &quantity);
  if (rc == RESTOCK_ERANGE) rc = 0, quantity = 1; /* plenty: in stock */
  if (rc == 0 && stock_in_stock(&v, quantity)) {
    snprintf(c->message, sizeof c->message,
             "You cannot sign up for restock notifications on a product that "
             "is not sold out");
    rc = RESTOCK_ENOTALLOWED;
  }
  variant_clear(&v);
  if (rc) return rc;
  long long id = 0, event_id = 0;
  rc = store_subscription_next_id(tx, &id);
  if (rc == 0) rc = store_event_next_id(tx, &event_id);
  /* The largest event id is taken: the event gets whatever id the database
   * picks, and the subscription is linked to it afterwards. */
  bool link_later = rc == RESTOCK_ERANGE;
  if (link_later) rc = 0, event_id = 0;
  char now[ISOTIME_LEN];
  isotime_now(now);
  if (rc == 0)
    rc = store_subscription_add(tx, id, c->variant_id, c->channel, c->email,
                                now, event_id, &c->created, c->created_at);
  if (rc || !c->created) return rc;
  char token[TOKEN_LEN + 1];
  token_make(c->unit.d->token_key, TOKEN_UNSUBSCRIBE, id, token);
  json_t *data = json_pack("{s:s, s:s, s:s}", "variant_id", c->variant_id,
                           "email", c->email, "unsubscribe_token", token);
  if (c->channel)
    json_object_set_new(data, "sales_channel_id", json_string(c->channel));
  long long written = 0;
  rc = outbox_write(tx, &c->unit, SUBSCRIBED, data, event_id, &written);
  json_decref(data);
  if (rc == 0 && link_later)
    rc = store_subscription_set_event(tx, id, written);
  return rc;
}

/* ---- subscribes in batches (issue 14) ---------------------------------- */

/* The subscribes a batch takes: unscoped ones, every step of which
 * (variant, stock, ids, row, event, deliveries) store_subscribe_many makes
 * in one statement. Whatever else a subscribe may carry (a key, a channel)
 * runs subscribe_fn; a new input of the subscribe must be handled here too,
 * or make it unbatchable. */
static bool batchable(const SubscribeCall *c) {
  return !c->publishable_key && !c->sales_channel_id;
}

/* The handlers of the subscribed event as store_subscribe_many takes them:
 * one whole-event delivery each (the event has no emails to split). */
static char *subscribed_handlers(const Config *cfg, size_t *n) {
  const HandlerSpec *h[64];
  size_t count = config_handlers(cfg, SUBSCRIBED, h, 64);
  if (count > 64) count = 64;
  json_t *list = json_array();
  for (size_t i = 0; i < count; i++)
    json_array_append_new(list, json_pack("[sI]", h[i]->name,
                                          (json_int_t)h[i]->max_attempts));
  char *text = json_text(list);
  json_decref(list);
  *n = count;
  return text;
}

static int subscribe_batch(StoreTx *tx, void *const *args, int *statuses,
                           size_t n) {
  long long *ids = xcalloc(n, sizeof *ids);
  SubscribeRow *rows = xcalloc(n, sizeof *rows);
  SubscribeResult *res = xcalloc(n, sizeof *res);
  char **texts = xcalloc(2 * n, sizeof *texts);
  size_t *handlers = xcalloc(n, sizeof *handlers);
  char now[ISOTIME_LEN];
  isotime_now(now);
  int rc = store_ids_reserve(tx, n, ids);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const SubscribeCall *c = args[i];
    char token[TOKEN_LEN + 1];
    token_make(c->unit.d->token_key, TOKEN_UNSUBSCRIBE, ids[i], token);
    /* The same data as subscribe_fn's event, key for key. */
    json_t *data = json_pack("{s:s, s:s, s:s}", "variant_id", c->variant_id,
                             "email", c->email, "unsubscribe_token", token);
    texts[2 * i] = json_text(data);
    json_decref(data);
    texts[2 * i + 1] = subscribed_handlers(c->unit.cfg, &handlers[i]);
    if (!texts[2 * i] || !texts[2 * i + 1]) rc = RESTOCK_ESTORE;
    rows[i] = (SubscribeRow){.id = ids[i],
                             .variant_id = c->variant_id,
                             .email = c->email,
                             .now = now,
                             .data = texts[2 * i],
                             .handlers = texts[2 * i + 1]};
  }
  if (rc == 0) rc = store_subscribe_many(tx, rows, n, isotime_now_ms(), res);
  /* Only now, all or nothing, the units' outputs. */
  for (size_t i = 0; rc == 0 && i < n; i++) {
    SubscribeCall *c = args[i];
    switch (res[i].verdict) {
      case SUBSCRIBE_ADDED:
        c->created = true;
        snprintf(c->created_at, sizeof c->created_at, "%s",
                 res[i].created_at);
        effects_event(&c->unit.fx, SUBSCRIBED, handlers[i]);
        statuses[i] = 0;
        break;
      case SUBSCRIBE_EXISTS:
        snprintf(c->created_at, sizeof c->created_at, "%s",
                 res[i].created_at);
        statuses[i] = 0;
        break;
      case SUBSCRIBE_NO_VARIANT:
        snprintf(c->message, sizeof c->message,
                 "Variant with id: %.300s was not found", c->variant_id);
        statuses[i] = RESTOCK_ENOTFOUND;
        break;
      case SUBSCRIBE_IN_STOCK:
        snprintf(c->message, sizeof c->message,
                 "You cannot sign up for restock notifications on a product "
                 "that is not sold out");
        statuses[i] = RESTOCK_ENOTALLOWED;
        break;
    }
  }
  for (size_t i = 0; i < 2 * n; i++) free(texts[i]);
  free(texts);
  free(handlers);
  free(res);
  free(rows);
  free(ids);
  return rc;
}

static void subscribe_finish(Unit *u, int status) {
  SubscribeCall *c = (SubscribeCall *)u;
  c->done(c, status);
}

void subscriptions_subscribe(Domain *d, SubscribeCall *c) {
  c->message[0] = '\0';
  c->created = false;
  if (batchable(c))
    unit_write_batched(d, &c->unit, subscribe_fn, subscribe_batch,
                       subscribe_finish);
  else
    unit_write(d, &c->unit, subscribe_fn, subscribe_finish);
}

/* ---- unsubscribe ------------------------------------------------------------ */

static int unsubscribe_fn(StoreTx *tx, void *arg) {
  UnsubscribeCall *c = arg;
  return store_subscription_remove(tx, c->subscription_id, &c->removed);
}

static void unsubscribe_finish(Unit *u, int status) {
  UnsubscribeCall *c = (UnsubscribeCall *)u;
  c->done(c, status);
}

void subscriptions_unsubscribe(Domain *d, UnsubscribeCall *c) {
  c->removed = false;
  unit_write(d, &c->unit, unsubscribe_fn, unsubscribe_finish);
}

/* ---- forgetting an email -------------------------------------------------- */

/* Takes `email` out of a plugin's event data: a string value equal to it
 * becomes null in an object and leaves an array, and a key equal to it goes
 * with its value. Returns true if anything changed. */
static bool scrub_email(json_t *v, const char *email) {
  bool changed = false;
  if (json_is_object(v)) {
    const char *key;
    json_t *item;
    void *tmp;
    json_object_foreach_safe(v, tmp, key, item) {
      if (strcasecmp(key, email) == 0) {
        json_object_del(v, key);
        changed = true;
      } else if (json_is_string(item) &&
                 strcasecmp(json_string_value(item), email) == 0) {
        json_object_set_new(v, key, json_null());
        changed = true;
      } else if (scrub_email(item, email)) {
        changed = true;
      }
    }
  } else if (json_is_array(v)) {
    for (size_t i = json_array_size(v); i-- > 0;) {
      json_t *item = json_array_get(v, i);
      if (json_is_string(item) &&
          strcasecmp(json_string_value(item), email) == 0) {
        json_array_remove(v, i);
        changed = true;
      } else if (scrub_email(item, email)) {
        changed = true;
      }
    }
  }
  return changed;
}

typedef struct {
  const char *email;
  json_t *found; /* [{id, data}] read before any is written */
} EmittedScan;

static int collect_emitted(void *ctx, long long id, const char *data) {
  EmittedScan *s = ctx;
  json_t *j = json_loads(data, 0, NULL);
  if (j && scrub_email(j, s->email))
    json_array_append_new(s->found,
                          json_pack("{s:I, s:o}", "id", (json_int_t)id, "data",
                                    j));
  else
    json_decref(j);
  return 0;
}

static int erase_fn(StoreTx *tx, void *arg) {
  EraseCall *c = arg;
  c->deleted = c->scrubbed = 0;
  /* The outbox first: the restocked events of the variants this email was
   * notified of lose it from their emails; its subscribed events go. */
  StrList variants = {0};
  int rc = store_history_variants(tx, c->email, c->variant_id, &variants);
  for (size_t i = 0; rc == 0 && i < variants.n; i++)
    rc = store_event_scrub_restocked(tx, variants.items[i], c->email,
                                     &c->scrubbed);
  strlist_clear(&variants);
  if (rc == 0)
    rc = store_event_erase_subscribed(tx, c->email, c->variant_id,
                                      &c->scrubbed);
  /* A plugin's events cannot be told apart by variant: only forgetting the
   * whole email scrubs them. The walk ends before any write. */
  if (rc == 0 && !c->variant_id) {
    EmittedScan scan = {c->email, json_array()};
    rc = store_events_emitted_with(tx, c->email, collect_emitted, &scan);
    size_t i;
    json_t *e;
    json_array_foreach(scan.found, i, e) {
      if (rc) break;
      char *text = json_text(json_object_get(e, "data"));
      if (!text) {
        rc = RESTOCK_ESTORE;
        break;
      }
      rc = store_event_set_data(
          tx, (long long)json_integer_value(json_object_get(e, "id")), text);
      free(text);
      c->scrubbed++;
    }
    json_decref(scan.found);
  }
  if (rc == 0)
    rc = store_subscription_erase(tx, c->email, c->variant_id, &c->deleted);
  return rc;
}

static void erase_finish(Unit *u, int status) {
  EraseCall *c = (EraseCall *)u;
  c->done(c, status);
}

void subscriptions_erase(Domain *d, EraseCall *c) {
  unit_write(d, &c->unit, erase_fn, erase_finish);
}
