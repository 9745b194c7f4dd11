/* The admin routes: variants and restock subscriptions. The bearer token is
 * checked by the dispatcher before any of these runs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "email.h"
#include "isotime.h"
#include "log.h"
#include "engine.h"
#include "outbox.h"
#include "stock.h"
#include "xmalloc.h"

/* Longest product_id, sku or title accepted. */
#define MAX_TEXT 1024

static const char *const variant_fields[] = {"id",
                                             "product_id",
                                             "sku",
                                             "title",
                                             "inventory_quantity",
                                             "allow_backorder",
                                             "manage_inventory"};

/* Sets a nullable text field of the variant from JSON. Returns 0 or -1. */
static int set_text(char **field, json_t *value) {
  if (json_is_null(value)) {
    free(*field);
    *field = NULL;
    return 0;
  }
  if (!json_is_string(value) || json_string_length(value) > MAX_TEXT ||
      strlen(json_string_value(value)) != json_string_length(value))
    return -1;
  free(*field);
  *field = xstrdup(json_string_value(value));
  return 0;
}

/* Applies the fields of `obj` to `v`. Returns 0, or -1 with a sentence in
 * `err`. An unknown field or a wrong type is an error; `id`, when present,
 * must be a valid id and equal `v->id` if that is already set. */
static int variant_apply(Variant *v, json_t *obj, char *err, size_t errlen) {
  if (!json_is_object(obj)) {
    snprintf(err, errlen, "a variant must be a JSON object");
    return -1;
  }
  const char *key;
  json_t *value;
  json_object_foreach(obj, key, value) {
    size_t i = 0, n = sizeof variant_fields / sizeof *variant_fields;
    while (i < n && strcmp(variant_fields[i], key) != 0) i++;
    if (i == n) {
      snprintf(err, errlen, "unknown field '%.64s'", key);
      return -1;
    }
    if (strcmp(key, "id") == 0) {
      if (!json_is_string(value) || !api_valid_id(json_string_value(value))) {
        snprintf(err, errlen, "id must be a string of 1 to %d characters",
                 API_MAX_ID);
        return -1;
      }
      if (v->id && strcmp(v->id, json_string_value(value)) != 0) {
        snprintf(err, errlen, "id does not match the id in the path");
        return -1;
      }
    } else if (strcmp(key, "product_id") == 0) {
      if (set_text(&v->product_id, value)) goto bad_text;
    } else if (strcmp(key, "sku") == 0) {
      if (set_text(&v->sku, value)) goto bad_text;
    } else if (strcmp(key, "title") == 0) {
      if (set_text(&v->title, value)) goto bad_text;
    } else if (strcmp(key, "inventory_quantity") == 0) {
      if (!json_is_integer(value)) {
        snprintf(err, errlen, "inventory_quantity must be an integer");
        return -1;
      }
      v->inventory_quantity = json_integer_value(value);
    } else {
      if (!json_is_boolean(value)) {
        snprintf(err, errlen, "%s must be a boolean", key);
        return -1;
      }
      bool b = json_is_true(value);
      if (strcmp(key, "allow_backorder") == 0)
        v->allow_backorder = b;
      else
        v->manage_inventory = b;
    }
    continue;
  bad_text:
    snprintf(err, errlen,
             "%s must be a string of at most %d characters or null", key,
             MAX_TEXT);
    return -1;
  }
  return 0;
}

/* Loads variant `id` or, if there is none, a new one with the defaults.
 * Returns 0 or STORE_ERROR. */
static int variant_load_or_new(Store *s, const char *id, Variant *v,
                               bool *exists) {
  int rc = store_variant_get(s, id, v);
  *exists = rc == 0;
  if (rc == STORE_NOT_FOUND) {
    memset(v, 0, sizeof *v);
    v->id = xstrdup(id);
    v->manage_inventory = true;
    isotime_now(v->created_at);
    rc = 0;
  }
  return rc;
}

/* The names of the fields that differ between `a` and `b`, as a new JSON
 * array. */
static json_t *changed_fields(const Variant *a, const Variant *b) {
  json_t *fields = json_array();
  const char *ta[] = {a->product_id, a->sku, a->title};
  const char *tb[] = {b->product_id, b->sku, b->title};
  const char *names[] = {"product_id", "sku", "title"};
  for (size_t i = 0; i < 3; i++)
    if ((ta[i] == NULL) != (tb[i] == NULL) ||
        (ta[i] && strcmp(ta[i], tb[i]) != 0))
      json_array_append_new(fields, json_string(names[i]));
  if (a->inventory_quantity != b->inventory_quantity)
    json_array_append_new(fields, json_string("inventory_quantity"));
  if (a->allow_backorder != b->allow_backorder)
    json_array_append_new(fields, json_string("allow_backorder"));
  if (a->manage_inventory != b->manage_inventory)
    json_array_append_new(fields, json_string("manage_inventory"));
  return fields;
}

/* Upserts one variant from `obj` (inside the caller's transaction). `id` is
 * the path's id, or NULL to take it from the object. An update writes
 * product-variant.updated with the changed fields, and a quantity that rose
 * schedules a restock check. Returns 0; -1 with `err` for bad input;
 * STORE_ERROR. */
static int upsert_one(App *app, const char *id, const char *product_id,
                      json_t *obj, Variant *out, char *err, size_t errlen,
                      bool *not_found) {
  Store *s = app->store;
  if (!id) {
    json_t *jid = json_is_object(obj) ? json_object_get(obj, "id") : NULL;
    if (!json_is_string(jid) || !api_valid_id(json_string_value(jid))) {
      snprintf(err, errlen, "id is required: a string of 1 to %d characters",
               API_MAX_ID);
      return -1;
    }
    id = json_string_value(jid);
  }
  bool exists = false;
  int rc = variant_load_or_new(s, id, out, &exists);
  if (rc) return rc;
  Variant before;
  variant_copy(&before, out);
  if (product_id) {
    if (exists && out->product_id && strcmp(out->product_id, product_id)) {
      *not_found = true;
      rc = -1;
      goto out;
    }
    json_t *pid =
        json_is_object(obj) ? json_object_get(obj, "product_id") : NULL;
    if (pid && !(json_is_string(pid) &&
                 strcmp(json_string_value(pid), product_id) == 0)) {
      snprintf(err, errlen, "product_id does not match the path");
      rc = -1;
      goto out;
    }
    free(out->product_id);
    out->product_id = xstrdup(product_id);
  }
  if (out->has_levels && json_is_object(obj) &&
      json_object_get(obj, "inventory_quantity")) {
    snprintf(err, errlen,
             "variant %.100s has inventory levels: its inventory_quantity is "
             "their sum; update the levels instead",
             out->id);
    rc = -1;
    goto out;
  }
  if (variant_apply(out, obj, err, errlen)) {
    rc = -1;
    goto out;
  }
  json_t *fields = changed_fields(&before, out);
  if (exists && json_array_size(fields) == 0) {
    json_decref(fields);
    goto out; /* nothing changed: nothing written, nothing emitted */
  }
  isotime_now(out->updated_at);
  rc = store_variant_put(s, out);
  if (rc == 0 && exists) {
    json_t *data = json_pack("{s:s, s:O}", "id", out->id, "fields", fields);
    rc = outbox_write(app, "product-variant.updated", data);
    json_decref(data);
  }
  json_decref(fields);
  if (rc == 0 && exists && stock_quantity(out) > stock_quantity(&before))
    rc = engine_schedule_check(app, out->id);
out:
  variant_clear(&before);
  return rc;
}

/* The three single-variant POST routes: validates, upserts in one
 * transaction, answers {"variant": ...}. */
static void post_variant(HttpRequest *req, App *app, const char *id,
                         const char *product_id) {
  if (!api_valid_id(id) || (product_id && !api_valid_id(product_id))) {
    http_respond_error(req, 404, "not_found",
                       "Variant with id: %s was not found", id);
    return;
  }
  json_t *body = api_json_body(req);
  if (!body) return;
  Variant v;
  memset(&v, 0, sizeof v);
  char err[256] = "";
  bool not_found = false;
  if (store_begin(app->store)) {
    api_store_failed(req);
    goto out;
  }
  int rc =
      upsert_one(app, id, product_id, body, &v, err, sizeof err, &not_found);
  if (rc == 0) rc = store_commit(app->store);
  if (rc)
    store_rollback(app->store);
  else
    api_after_commit(app);
  if (not_found)
    http_respond_error(req, 404, "not_found",
                       "Variant with id: %s was not found in product %s", id,
                       product_id);
  else if (rc == -1)
    http_respond_error(req, 400, "invalid_data", "%s", err);
  else if (rc)
    api_store_failed(req);
  else
    http_respond_json(req, 200,
                      json_pack("{s:o}", "variant", api_variant_json(&v)));
out:
  variant_clear(&v);
  json_decref(body);
}

void api_admin_variant_post(HttpRequest *req, void *app) {
  post_variant(req, app, router_param(&req->match, "id"), NULL);
}

void api_admin_product_variant_post(HttpRequest *req, void *app) {
  post_variant(req, app, router_param(&req->match, "id"),
               router_param(&req->match, "product_id"));
}

/* POST /admin/variants: one variant object or {"variants": [...]}, all or
 * nothing. */
void api_admin_variants_post(HttpRequest *req, void *data) {
  App *app = data;
  json_t *body = api_json_body(req);
  if (!body) return;
  json_t *list = json_object_get(body, "variants");
  bool wrapped = list != NULL;
  if (wrapped && (!json_is_array(list) || json_array_size(list) == 0 ||
                  json_object_size(body) != 1)) {
    http_respond_error(req, 400, "invalid_data",
                       "variants must be a non-empty array and the only field");
    json_decref(body);
    return;
  }
  if (!wrapped) {
    list = json_array();
    json_array_append(list, body);
  } else {
    json_incref(list);
  }
  json_t *out = json_array();
  char err[256] = "";
  size_t i = 0;
  int rc = store_begin(app->store);
  for (; rc == 0 && i < json_array_size(list); i++) {
    Variant v;
    memset(&v, 0, sizeof v);
    bool not_found = false;
    rc = upsert_one(app, NULL, NULL, json_array_get(list, i), &v, err,
                    sizeof err, &not_found);
    if (rc == 0) json_array_append_new(out, api_variant_json(&v));
    variant_clear(&v);
  }
  if (rc == 0) rc = store_commit(app->store);
  if (rc)
    store_rollback(app->store);
  else
    api_after_commit(app);
  if (rc == -1 && wrapped)
    http_respond_error(req, 400, "invalid_data", "variants[%zu]: %s", i - 1,
                       err);
  else if (rc == -1)
    http_respond_error(req, 400, "invalid_data", "%s", err);
  else if (rc)
    api_store_failed(req);
  else
    http_respond_json(req, 200, json_pack("{s:O}", "variants", out));
  json_decref(out);
  json_decref(list);
  json_decref(body);
}

/* GET /admin/variants/{id} */
void api_admin_variant_get(HttpRequest *req, void *data) {
  App *app = data;
  const char *id = router_param(&req->match, "id");
  Variant v;
  memset(&v, 0, sizeof v);
  int rc = store_variant_get(app->store, id, &v);
  if (rc == STORE_NOT_FOUND)
    http_respond_error(req, 404, "not_found",
                       "Variant with id: %s was not found", id);
  else if (rc)
    api_store_failed(req);
  else
    http_respond_json(req, 200,
                      json_pack("{s:o}", "variant", api_variant_json(&v)));
  variant_clear(&v);
}

/* Parses a non-negative decimal query parameter no greater than `max`.
 * Returns 0 (with *out, or `dflt` when absent) or -1. */
static int param_count(const HttpRequest *req, const char *name, long long dflt,
                       long long max, long long *out) {
  const char *s = url_pairs_get(&req->params, name);
  if (!s) {
    *out = dflt;
    return 0;
  }
  if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 12) return -1;
  *out = strtoll(s, NULL, 10);
  return *out <= max ? 0 : -1;
}

/* What a notifications listing reads on the thread pool. The filter's
 * strings point into the request's params, or at `email`. */
typedef struct {
  SubscriptionFilter filter;
  char email[EMAIL_MAX + 1];
} NotificationsRead;

static int read_notifications(Store *reader, void *arg, json_t **out) {
  const NotificationsRead *r = arg;
  json_t *rows = NULL;
  long long count = 0;
  if (store_subscription_list(reader, &r->filter, &rows, &count))
    return STORE_ERROR;
  *out =
      json_pack("{s:o, s:I, s:I, s:I}", "restock_notifications", rows, "count",
                (json_int_t)count, "limit", (json_int_t)r->filter.limit,
                "offset", (json_int_t)r->filter.offset);
  return 0;
}

/* GET /admin/restock-notifications. Its count can walk a table, so it runs
 * off the loop. */
void api_admin_notifications_get(HttpRequest *req, void *data) {
  App *app = data;
  SubscriptionFilter f;
  memset(&f, 0, sizeof f);
  if (param_count(req, "limit", 50, 1000, &f.limit)) {
    http_respond_error(req, 400, "invalid_data",
                       "limit must be an integer from 0 to 1000");
    return;
  }
  if (param_count(req, "offset", 0, (long long)1 << 40, &f.offset)) {
    http_respond_error(req, 400, "invalid_data",
                       "offset must be a non-negative integer");
    return;
  }
  const char *status = url_pairs_get(&req->params, "status");
  if (status && strcmp(status, "active") != 0 &&
      strcmp(status, "notified") != 0) {
    http_respond_error(req, 400, "invalid_data",
                       "status must be active or notified");
    return;
  }
  f.notified = status && strcmp(status, "notified") == 0;
  f.variant_id = url_pairs_get(&req->params, "variant_id");
  f.sales_channel_id = url_pairs_get(&req->params, "sales_channel_id");
  char email[EMAIL_MAX + 1];
  const char *raw_email = url_pairs_get(&req->params, "email");
  if (raw_email) {
    /* Stored emails are normalized; an unparseable one matches nothing. */
    if (email_normalize(raw_email, strlen(raw_email), email, NULL))
      snprintf(email, sizeof email, "%s", "");
    f.email = email;
  }
  NotificationsRead *r = xmalloc(sizeof *r);
  r->filter = f;
  if (f.email) {
    memcpy(r->email, email, sizeof email);
    r->filter.email = r->email;
  }
  api_read_async(app, req, read_notifications, r);
}

/* DELETE /admin/restock-notifications?email=E[&variant_id=V] */
void api_admin_notifications_delete(HttpRequest *req, void *data) {
  App *app = data;
  const char *raw_email = url_pairs_get(&req->params, "email");
  char email[EMAIL_MAX + 1];
  const char *why = NULL;
  if (!raw_email) {
    http_respond_error(req, 400, "invalid_data", "email is required");
    return;
  }
  if (email_normalize(raw_email, strlen(raw_email), email, &why)) {
    http_respond_error(req, 400, "invalid_data", "Invalid email: %s", why);
    return;
  }
  long long deleted = 0, scrubbed = 0;
  if (store_begin(app->store) ||
      store_subscription_erase(app->store, email,
                               url_pairs_get(&req->params, "variant_id"),
                               &deleted, &scrubbed) ||
      store_commit(app->store)) {
    store_rollback(app->store);
    api_store_failed(req);
    return;
  }
  /* The answer keeps the contract's shape; the events changed are only
   * logged. */
  if (scrubbed)
    log_info("forgot an email: %lld subscriptions, %lld events", deleted,
             scrubbed);
  http_respond_json(req, 200,
                    json_pack("{s:I}", "deleted", (json_int_t)deleted));
}

/* What an events listing reads on the thread pool; the strings point into
 * the request's params. */
typedef struct {
  const char *name, *status;
  long long limit, offset;
} EventsRead;

static int read_events(Store *reader, void *arg, json_t **out) {
  const EventsRead *r = arg;
  json_t *rows = NULL;
  long long count = 0;
  if (store_event_list(reader, r->name, r->status, r->limit, r->offset, &rows,
                       &count))
    return STORE_ERROR;
  *out = json_pack("{s:o, s:I, s:I, s:I}", "events", rows, "count",
                   (json_int_t)count, "limit", (json_int_t)r->limit, "offset",
                   (json_int_t)r->offset);
  return 0;
}

/* GET /admin/events?name=&status=&limit=&offset=. Off the loop, as the
 * count of all events walks the table. */
void api_admin_events_get(HttpRequest *req, void *data) {
  App *app = data;
  long long limit, offset;
  if (param_count(req, "limit", 50, 1000, &limit)) {
    http_respond_error(req, 400, "invalid_data",
                       "limit must be an integer from 0 to 1000");
    return;
  }
  if (param_count(req, "offset", 0, (long long)1 << 40, &offset)) {
    http_respond_error(req, 400, "invalid_data",
                       "offset must be a non-negative integer");
    return;
  }
  const char *status = url_pairs_get(&req->params, "status");
  if (status && strcmp(status, "pending") && strcmp(status, "delivered") &&
      strcmp(status, "dead")) {
    http_respond_error(req, 400, "invalid_data",
                       "status must be pending, delivered or dead");
    return;
  }
  EventsRead *r = xmalloc(sizeof *r);
  r->name = url_pairs_get(&req->params, "name");
  r->status = status;
  r->limit = limit;
  r->offset = offset;
  api_read_async(app, req, read_events, r);
}

/* POST /admin/events/{id}/retry: requeues the event's dead deliveries. */
void api_admin_event_retry(HttpRequest *req, void *data) {
  App *app = data;
  const char *raw = router_param(&req->match, "id");
  long long id = -1;
  if (strspn(raw, "0123456789") == strlen(raw) && strlen(raw) <= 15)
    id = strtoll(raw, NULL, 10);
  long long requeued = 0;
  int rc = id < 0 ? STORE_NOT_FOUND : store_begin(app->store);
  if (rc == 0)
    rc = store_event_retry(app->store, id, isotime_now_ms(), &requeued);
  if (rc == 0) rc = store_commit(app->store);
  if (rc) store_rollback(app->store);
  if (rc == STORE_NOT_FOUND) {
    http_respond_error(req, 404, "not_found", "Event with id: %s was not found",
                       raw);
    return;
  }
  if (rc) {
    api_store_failed(req);
    return;
  }
  outbox_kick(app->outbox);
  http_respond_json(req, 200,
                    json_pack("{s:I, s:I}", "id", (json_int_t)id, "requeued",
                              (json_int_t)requeued));
}
