#include "subscriptions.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "email.h"
#include "engine.h"
#include "json_text.h"
#include "log.h"
#include "outbox.h"
#include "stock.h"
#include "token.h"
#include "xmalloc.h"

#define SUBSCRIBED "restock-notification.subscribed"
#define CONFIRMATION "restock-notification.confirmation_requested"
/* The least time between two confirmation mails of one subscription. */
#define RESEND_MS 60000

bool subscriptions_valid_locale(const char *tag) {
  size_t len = strlen(tag);
  if (len < 2 || len > 35) return false;
  size_t run = 0, part = 0;
  for (size_t i = 0; i <= len; i++) {
    char c = tag[i];
    if (c == '-' || c == '\0') {
      if (run == 0 || run > 8 || (part == 0 && run < 2)) return false;
      run = 0;
      part++;
      continue;
    }
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && part > 0)) return false;
    run++;
  }
  return true;
}

void subscribe_call_clear(SubscribeCall *c) {
  json_decref(c->headers);
  c->headers = NULL;
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

static void text_field(Buf *b, const char *key, const char *value) {
  buf_puts(b, key);
  json_text_cstring(b, value);
}

/* Writes restock-notification.subscribed for subscription `id`, now
 * active, as event `event_id` (0: any; *linked false then, and the caller
 * links them). Its data is written as JSON text at once, in the order a
 * tree would have it (a jansson tree of it had been 4% of the writer's
 * work a subscribe). */
static int emit_subscribed(StoreTx *tx, Unit *u, long long id,
                           long long event_id, const char *variant_id,
                           const char *channel, const char *email,
                           long long quantity, const char *locale,
                           long long *written) {
  char unsubscribe[TOKEN_LEN + 1], manage[TOKEN_MANAGE_MAX];
  token_make(u->d->token_key, TOKEN_UNSUBSCRIBE, id, unsubscribe);
  token_make_manage(u->d->token_key, email, manage);
  Buf data = {0};
  buf_reserve(&data, 256);
  text_field(&data, "{\"variant_id\":", variant_id);
  text_field(&data, ",\"email\":", email);
  text_field(&data, ",\"unsubscribe_token\":", unsubscribe);
  text_field(&data, ",\"manage_token\":", manage);
  if (channel && *channel) text_field(&data, ",\"sales_channel_id\":", channel);
  if (locale && *locale) text_field(&data, ",\"locale\":", locale);
  if (quantity > 0) buf_printf(&data, ",\"quantity\":%lld", quantity);
  buf_puts(&data, "}");
  int rc = outbox_write_text(tx, u, SUBSCRIBED, data.data, NULL, 0, NULL, NULL,
                             event_id, written);
  buf_free(&data);
  return rc;
}

/* Asks the shopper to confirm pending subscription `id`. */
static int emit_confirmation(StoreTx *tx, SubscribeCall *c, long long id,
                             long long now_ms) {
  Unit *u = &c->unit;
  char confirm[TOKEN_LEN + 1], unsubscribe[TOKEN_LEN + 1];
  char manage[TOKEN_MANAGE_MAX];
  token_make(u->d->token_key, TOKEN_CONFIRM, id, confirm);
  token_make(u->d->token_key, TOKEN_UNSUBSCRIBE, id, unsubscribe);
  token_make_manage(u->d->token_key, c->email, manage);
  json_t *data =
      json_pack("{s:s, s:s, s:s, s:s, s:s}", "variant_id", c->variant_id,
                "email", c->email, "confirm_token", confirm,
                "unsubscribe_token", unsubscribe, "manage_token", manage);
  if (c->channel)
    json_object_set_new(data, "sales_channel_id", json_string(c->channel));
  if (c->locale[0]) json_object_set_new(data, "locale", json_string(c->locale));
  if (c->quantity > 0)
    json_object_set_new(data, "quantity", json_integer(c->quantity));
  int rc = outbox_write(tx, u, CONFIRMATION, data, 0, NULL);
  json_decref(data);
  return rc ? rc : store_pending_sent(tx, id, now_ms);
}

static int subscribe_fn(StoreTx *tx, void *arg) {
  SubscribeCall *c = arg;
  const Options *o = &c->unit.cfg->options;
  if (email_domain_listed(&c->unit.cfg->blocked_domains, c->email)) {
    snprintf(c->message, sizeof c->message,
             "Subscriptions from %.200s are not accepted",
             strrchr(c->email, '@') + 1);
    return RESTOCK_ENOTALLOWED;
  }
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
  if (rc == RESTOCK_ERANGE) rc = 0, quantity = LLONG_MAX; /* plenty */
  /* Sold out, or (for a shopper who wants more) holding fewer units than
   * wanted, with no backorders to make up the rest. */
  bool short_of_wish = c->quantity > 0 && v.manage_inventory &&
                       !v.allow_backorder && quantity < c->quantity;
  if (rc == 0 && stock_in_stock(&v, quantity) && !short_of_wish) {
    snprintf(c->message, sizeof c->message,
             "You cannot sign up for restock notifications on a product that "
             "is not sold out");
    rc = RESTOCK_ENOTALLOWED;
  }
  variant_clear(&v);
  if (rc) return rc;
  long long id = 0, event_id = 0;
  rc = store_subscription_next_id(tx, &id);
  if (rc == 0 && !o->double_opt_in) rc = store_event_next_id(tx, &event_id);
  /* The largest event id is taken: the event gets whatever id the database
   * picks, and the subscription is linked to it afterwards. */
  bool link_later = rc == RESTOCK_ERANGE;
  if (link_later) rc = 0, event_id = 0;
  if (rc) return rc;
  char now[ISOTIME_LEN];
  isotime_now(now);
  long long now_ms = isotime_now_ms();
  NewSubscription in = {.id = id,
                        .variant_id = c->variant_id,
                        .channel = c->channel,
                        .email = c->email,
                        .now = now,
                        .now_ms = now_ms,
                        .quantity = c->quantity,
                        .locale = c->locale[0] ? c->locale : NULL,
                        .pending = o->double_opt_in,
                        .subscribed_event_id = event_id};
  StoredSubscription out;
  rc = store_subscription_put(tx, &in, &out);
  if (rc) return rc;
  c->created = out.created;
  c->pending = out.pending;
  snprintf(c->created_at, sizeof c->created_at, "%s", out.created_at);
  if (out.pending) {
    /* Asked again while pending: a new confirmation mail, at most one a
     * minute. */
    if (out.created || now_ms - out.confirm_sent_at >= RESEND_MS)
      rc = emit_confirmation(tx, c, out.id, now_ms);
    return rc;
  }
  if (!out.created) return 0;
  long long written = 0;
  rc = emit_subscribed(tx, &c->unit, id, event_id, c->variant_id, c->channel,
                       c->email, c->quantity, c->locale, &written);
  if (rc == 0 && link_later) rc = store_subscription_set_event(tx, id, written);
  return rc;
}

/* ---- subscribes in batches (issue 14) ---------------------------------- */

/* The subscribes a batch takes: active, unscoped ones without a wish (no
 * quantity, no locale), every step of which (variant, stock, ids, row,
 * event, deliveries) store_subscribe_many makes in one statement, as
 * subscribe_fn and store_subscription_put do them for such a subscribe.
 * Whatever else a subscribe may carry (a key, a channel, a wish, double
 * opt-in) runs subscribe_fn; a new input of the subscribe must be handled
 * here too, or make it unbatchable. */
static bool batchable(const SubscribeCall *c) {
  return !c->publishable_key && !c->sales_channel_id && c->quantity == 0 &&
         !c->locale[0] && !c->unit.cfg->options.double_opt_in;
}

/* The handlers of the subscribed event as store_subscribe_many takes them:
 * one whole-event delivery each (the event has no emails to split). */
static char *subscribed_handlers(const Config *cfg, size_t *n) {
  const HandlerSpec *h[64];
  size_t count = config_handlers(cfg, SUBSCRIBED, h, 64);
  if (count > 64) count = 64;
  json_t *list = json_array();
  for (size_t i = 0; i < count; i++)
    json_array_append_new(
        list, json_pack("[sI]", h[i]->name, (json_int_t)h[i]->max_attempts));
  char *text = json_text(list);
  json_decref(list);
  *n = count;
  return text;
}

static int subscribe_batch(StoreTx *tx, void *const *args, int *statuses,
                           size_t n) {
  /* A unit of the batch the statement cannot take as it is (its domain
   * is blocked): the others go, and it is answered as subscribe_fn
   * would. */
  size_t *row_of = xcalloc(n, sizeof *row_of);
  size_t rows_n = 0;
  for (size_t i = 0; i < n; i++) {
    const SubscribeCall *c = args[i];
    row_of[i] = email_domain_listed(&c->unit.cfg->blocked_domains, c->email)
                    ? (size_t)-1
                    : rows_n++;
    if (c->unit.cfg->options.double_opt_in) {
      free(row_of);
      return RESTOCK_EINVAL; /* a reload in between: each runs its fn */
    }
  }
  long long *ids = xcalloc(rows_n ? rows_n : 1, sizeof *ids);
  SubscribeRow *rows = xcalloc(rows_n ? rows_n : 1, sizeof *rows);
  SubscribeResult *res = xcalloc(rows_n ? rows_n : 1, sizeof *res);
  char **texts = xcalloc(2 * (rows_n ? rows_n : 1), sizeof *texts);
  size_t *handlers = xcalloc(rows_n ? rows_n : 1, sizeof *handlers);
  char now[ISOTIME_LEN];
  isotime_now(now);
  int rc = rows_n ? store_ids_reserve(tx, rows_n, ids) : 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (row_of[i] == (size_t)-1) continue;
    size_t r = row_of[i];
    const SubscribeCall *c = args[i];
    char unsubscribe[TOKEN_LEN + 1], manage[TOKEN_MANAGE_MAX];
    token_make(c->unit.d->token_key, TOKEN_UNSUBSCRIBE, ids[r], unsubscribe);
    token_make_manage(c->unit.d->token_key, c->email, manage);
    /* The same data as emit_subscribed's, key for key. */
    json_t *data = json_pack(
        "{s:s, s:s, s:s, s:s}", "variant_id", c->variant_id, "email", c->email,
        "unsubscribe_token", unsubscribe, "manage_token", manage);
    texts[2 * r] = json_text(data);
    json_decref(data);
    texts[2 * r + 1] = subscribed_handlers(c->unit.cfg, &handlers[r]);
    if (!texts[2 * r] || !texts[2 * r + 1]) rc = RESTOCK_ESTORE;
    rows[r] = (SubscribeRow){.id = ids[r],
                             .variant_id = c->variant_id,
                             .email = c->email,
                             .now = now,
                             .data = texts[2 * r],
                             .handlers = texts[2 * r + 1]};
  }
  if (rc == 0 && rows_n)
    rc = store_subscribe_many(tx, rows, rows_n, isotime_now_ms(), res);
  /* An email with a pending subscription of the variant (double opt-in
   * was on when it subscribed): subscribe_fn asks it to confirm again. */
  for (size_t r = 0; rc == 0 && r < rows_n; r++)
    if (res[r].verdict == SUBSCRIBE_PENDING) rc = RESTOCK_EINVAL;
  /* Only now, all or nothing, the units' outputs. */
  for (size_t i = 0; rc == 0 && i < n; i++) {
    SubscribeCall *c = args[i];
    if (row_of[i] == (size_t)-1) {
      snprintf(c->message, sizeof c->message,
               "Subscriptions from %.200s are not accepted",
               strrchr(c->email, '@') + 1);
      statuses[i] = RESTOCK_ENOTALLOWED;
      continue;
    }
    size_t r = row_of[i];
    switch (res[r].verdict) {
      case SUBSCRIBE_ADDED:
        c->created = true;
        snprintf(c->created_at, sizeof c->created_at, "%s", res[r].created_at);
        effects_event(&c->unit.fx, SUBSCRIBED, handlers[r]);
        statuses[i] = 0;
        break;
      case SUBSCRIBE_EXISTS:
        snprintf(c->created_at, sizeof c->created_at, "%s", res[r].created_at);
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
      case SUBSCRIBE_PENDING:
        break; /* not reached: the batch gave way above */
    }
  }
  for (size_t i = 0; i < 2 * (rows_n ? rows_n : 1); i++) free(texts[i]);
  free(texts);
  free(handlers);
  free(res);
  free(rows);
  free(ids);
  free(row_of);
  return rc;
}

/* Before subscribe_fn runs again (a replayed group): its outputs as they
 * were when it was queued. */
static void subscribe_reset(Unit *u) {
  SubscribeCall *c = (SubscribeCall *)u;
  free(c->channel);
  c->channel = NULL;
  c->message[0] = '\0';
  c->created_at[0] = '\0';
  c->created = c->pending = false;
}

static void subscribe_finish(Unit *u, int status) {
  SubscribeCall *c = (SubscribeCall *)u;
  c->done(c, status);
}

bool subscriptions_hooked(const Domain *d) {
  return d->subscribe_hook && d->config->on_subscribe;
}

/* The hook's argument (contract section 3). */
static json_t *hook_argument(const SubscribeCall *c) {
  json_t *a = json_pack("{s:s, s:s, s:o, s:s}", "variant_id", c->variant_id,
                        "email", c->email, "headers",
                        c->headers ? json_incref(c->headers) : json_object(),
                        "remote_addr", c->remote_addr);
  if (c->sales_channel_id)
    json_object_set_new(a, "sales_channel_id",
                        json_string(c->sales_channel_id));
  if (c->quantity > 0)
    json_object_set_new(a, "quantity", json_integer(c->quantity));
  if (c->locale[0]) json_object_set_new(a, "locale", json_string(c->locale));
  return a;
}

static void subscribe_write(Domain *d, SubscribeCall *c);

static void hook_done(void *arg, HookOutcome outcome, const char *message) {
  SubscribeCall *c = arg;
  Domain *d = c->unit.d;
  if (outcome == HOOK_ALLOW) {
    subscribe_write(d, c);
  } else if (outcome == HOOK_REFUSE) {
    snprintf(c->message, sizeof c->message, "%s", message);
    c->done(c, RESTOCK_ENOTALLOWED);
  } else {
    log_warn("restock.on_subscribe failed (a subscription to %s): %s",
             c->variant_id, message);
    snprintf(c->message, sizeof c->message,
             "The subscription could not be checked; try again later");
    c->done(c, RESTOCK_EUNAVAIL);
  }
}

/* Queues the subscribe's unit: batched with its neighbours when it can be
 * (issue 14). The Config it runs with is the Domain's now. */
static void subscribe_write(Domain *d, SubscribeCall *c) {
  c->unit.cfg = d->config; /* for batchable(); unit_write takes its ref */
  unit_write_replayable(d, &c->unit, subscribe_fn,
                        batchable(c) ? subscribe_batch : NULL, subscribe_reset,
                        subscribe_finish);
}

void subscriptions_subscribe(Domain *d, SubscribeCall *c) {
  c->message[0] = '\0';
  c->created = false;
  if (subscriptions_hooked(d)) {
    c->unit.d = d;
    json_t *arg = hook_argument(c);
    int rc = d->subscribe_hook(d->hook_ctx, arg, hook_done, c);
    json_decref(arg);
    if (rc == 0) return;
  }
  subscribe_write(d, c);
}

/* ---- unsubscribe ------------------------------------------------------------
 */

static int unsubscribe_fn(StoreTx *tx, void *arg) {
  UnsubscribeCall *c = arg;
  int rc = store_subscription_remove(tx, c->subscription_id, &c->removed);
  if (rc == 0 && c->email[0])
    rc = store_email_known(tx, c->email, &c->email_known);
  return rc;
}

static void unsubscribe_finish(Unit *u, int status) {
  UnsubscribeCall *c = (UnsubscribeCall *)u;
  c->done(c, status);
}

void subscriptions_unsubscribe(Domain *d, UnsubscribeCall *c) {
  c->removed = c->email_known = false;
  unit_write(d, &c->unit, unsubscribe_fn, unsubscribe_finish);
}

/* ---- forgetting an email --------------------------------------------------
 */

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
    json_array_append_new(
        s->found, json_pack("{s:I, s:o}", "id", (json_int_t)id, "data", j));
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
    rc =
        store_event_erase_subscribed(tx, c->email, c->variant_id, &c->scrubbed);
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

/* ---- confirming ---------------------------------------------------------- */

static int confirm_fn(StoreTx *tx, void *arg) {
  ConfirmCall *c = arg;
  long long event_id = 0;
  int rc = store_event_next_id(tx, &event_id);
  bool link_later = rc == RESTOCK_ERANGE;
  if (link_later) rc = 0, event_id = 0;
  if (rc) return rc;
  char now[ISOTIME_LEN];
  isotime_now(now);
  ConfirmedSubscription s;
  rc = store_pending_confirm(tx, c->subscription_id, now, event_id, &s);
  if (rc) return rc;
  c->was_active = s.was_active;
  snprintf(c->email, sizeof c->email, "%s", s.email);
  if (s.was_active) return 0;
  long long written = 0;
  rc = emit_subscribed(tx, &c->unit, c->subscription_id, event_id, s.variant_id,
                       s.sales_channel_id, s.email, s.quantity, s.locale,
                       &written);
  if (rc == 0 && link_later)
    rc = store_subscription_set_event(tx, c->subscription_id, written);
  return rc;
}

static void confirm_finish(Unit *u, int status) {
  ConfirmCall *c = (ConfirmCall *)u;
  c->done(c, status);
}

void subscriptions_confirm(Domain *d, ConfirmCall *c) {
  c->was_active = false;
  unit_write(d, &c->unit, confirm_fn, confirm_finish);
}

/* ---- housekeeping -------------------------------------------------------- */

/* Rows one unit drops or expires at most. */
#define HOUSEKEEPING_CHUNK 500

struct Housekeeping {
  Domain *d;
  uv_timer_t timer;
  bool running; /* a unit is out */
  bool closing; /* uv_close was called */
  bool closed;  /* and its callback ran */
};

typedef struct {
  Unit unit;
  Housekeeping *h;
  long long dropped, expired;
  bool reached;
} HousekeepingUnit;

static int housekeeping_fn(StoreTx *tx, void *arg) {
  HousekeepingUnit *hu = arg;
  const Options *o = &hu->unit.cfg->options;
  long long now = isotime_now_ms();
  char cutoff[ISOTIME_LEN], stamp[ISOTIME_LEN];
  isotime_now(stamp);
  bool pending_done = true, active_done = true;
  isotime_format(now - o->confirm_ttl, cutoff);
  int rc = store_pending_purge(tx, cutoff, HOUSEKEEPING_CHUNK, &hu->dropped,
                               &pending_done);
  if (rc == 0 && o->subscription_ttl > 0) {
    isotime_format(now - o->subscription_ttl, cutoff);
    rc = store_subscription_expire(tx, cutoff, stamp, HOUSEKEEPING_CHUNK,
                                   &hu->expired, &active_done);
  }
  hu->reached = pending_done && active_done;
  return rc;
}

static void on_housekeeping(uv_timer_t *t);

/* How often to look: often enough that a subscription goes within a minute
 * of falling due, and more often for short times (a test's). */
static uint64_t housekeeping_period(const Domain *d) {
  const Options *o = &d->config->options;
  long long least = o->confirm_ttl;
  if (o->subscription_ttl > 0 && o->subscription_ttl < least)
    least = o->subscription_ttl;
  long long p = least / 2;
  return (uint64_t)(p < 100 ? 100 : p > 30000 ? 30000 : p);
}

static void housekeeping_done(Unit *u, int status) {
  HousekeepingUnit *hu = (HousekeepingUnit *)u;
  Housekeeping *h = hu->h;
  h->running = false;
  if (status == 0 && (hu->dropped || hu->expired))
    log_info(
        "housekeeping: %lld unconfirmed subscriptions dropped, %lld expired",
        hu->dropped, hu->expired);
  bool reached = status != 0 || hu->reached;
  free(hu);
  if (h->closing) {
    if (h->closed) free(h);
    return;
  }
  /* More left: go on soon, after what else waits for the store. */
  uv_timer_start(&h->timer, on_housekeeping,
                 reached ? housekeeping_period(h->d) : 10, 0);
}

static void on_housekeeping(uv_timer_t *t) {
  Housekeeping *h = t->data;
  if (h->running || h->closing) return;
  HousekeepingUnit *hu = xcalloc(1, sizeof *hu);
  hu->h = h;
  h->running = true;
  unit_write(h->d, &hu->unit, housekeeping_fn, housekeeping_done);
}

Housekeeping *subscriptions_housekeeping(Domain *d) {
  Housekeeping *h = xcalloc(1, sizeof *h);
  h->d = d;
  uv_timer_init(d->loop, &h->timer);
  h->timer.data = h;
  uv_timer_start(&h->timer, on_housekeeping, housekeeping_period(d), 0);
  uv_unref((uv_handle_t *)&h->timer); /* housekeeping keeps nothing alive */
  return h;
}

static void housekeeping_closed(uv_handle_t *handle) {
  Housekeeping *h = handle->data;
  h->closed = true;
  if (!h->running) free(h);
}

void subscriptions_housekeeping_close(Housekeeping *h) {
  if (!h) return;
  h->closing = true;
  uv_close((uv_handle_t *)&h->timer, housekeeping_closed);
}
