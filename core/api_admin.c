/* The admin routes: variants, restock subscriptions and events. The bearer
 * token is checked by the dispatcher before any of these runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "email.h"
#include "inventory.h"
#include "isotime.h"
#include "json_text.h"
#include "log.h"
#include "node.h"
#include "outbox.h"
#include "stock.h"
#include "subscriptions.h"
#include "url.h"
#include "xmalloc.h"

/* ---- variants: writes ------------------------------------------------------
 */

typedef struct {
  UpsertCall call;
  HttpRequest *req;
  bool list; /* answer {"variants": [...]} rather than {"variant": ...} */
} UpsertReq;

static void upserted(UpsertCall *c, int status) {
  UpsertReq *r = (UpsertReq *)c;
  if (status) {
    api_fail(r->req, status, c->message);
  } else if (r->list) {
    json_t *out = json_array();
    for (size_t i = 0; i < c->nout; i++)
      json_array_append_new(out, api_variant_json(&c->out[i]));
    http_respond_json(r->req, 200, json_pack("{s:o}", "variants", out));
  } else {
    http_respond_json(
        r->req, 200,
        json_pack("{s:o}", "variant", api_variant_json(&c->out[0])));
  }
  upsert_call_clear(c);
  free(r);
}

/* Starts an upsert of the variants in `list` (taken). */
static void start_upsert(Api *api, HttpRequest *req, json_t *list, bool wrapped,
                         bool answer_list, const char *id,
                         const char *product_id) {
  UpsertReq *r = xcalloc(1, sizeof *r);
  r->call.variants = list;
  r->call.wrapped = wrapped;
  r->call.id = id ? xstrdup(id) : NULL;
  r->call.product_id = product_id ? xstrdup(product_id) : NULL;
  r->call.done = upserted;
  r->list = answer_list;
  r->req = http_defer(req);
  inventory_upsert(api->d, &r->call);
}

/* The two single-variant POST routes. */
static void post_variant(HttpRequest *req, Api *api, const char *id,
                         const char *product_id) {
  if (!domain_valid_id(id) || (product_id && !domain_valid_id(product_id))) {
    http_respond_error(req, 404, "not_found",
                       "Variant with id: %s was not found", id);
    return;
  }
  json_t *body = api_json_body(req);
  if (!body) return;
  json_t *list = json_array();
  json_array_append_new(list, body);
  start_upsert(api, req, list, false, false, id, product_id);
}

void api_admin_variant_post(HttpRequest *req, void *api) {
  post_variant(req, api, router_param(&req->match, "id"), NULL);
}

void api_admin_product_variant_post(HttpRequest *req, void *api) {
  post_variant(req, api, router_param(&req->match, "id"),
               router_param(&req->match, "product_id"));
}

/* POST /admin/variants: one variant object or {"variants": [...]}, all or
 * nothing. */
void api_admin_variants_post(HttpRequest *req, void *data) {
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
  if (wrapped) {
    json_incref(list);
    json_decref(body);
  } else {
    list = json_array();
    json_array_append_new(list, body);
  }
  start_upsert(data, req, list, wrapped, true, NULL, NULL);
}

typedef struct {
  VariantDeleteCall call;
  HttpRequest *req;
} VariantDeleteReq;

static void variant_deleted(VariantDeleteCall *c, int status) {
  VariantDeleteReq *r = (VariantDeleteReq *)c;
  if (status == RESTOCK_ENOTFOUND)
    http_respond_error(r->req, 404, "not_found",
                       "Variant with id: %s was not found", c->id);
  else if (status)
    api_fail(r->req, status, NULL);
  else
    http_respond_json(r->req, 200, json_pack("{s:b}", "deleted", 1));
  free(r);
}

/* DELETE /admin/variants/{id} */
void api_admin_variant_delete(HttpRequest *req, void *data) {
  Api *api = data;
  const char *id = router_param(&req->match, "id");
  if (!domain_valid_id(id)) {
    http_respond_error(req, 404, "not_found",
                       "Variant with id: %s was not found", id);
    return;
  }
  VariantDeleteReq *r = xcalloc(1, sizeof *r);
  snprintf(r->call.id, sizeof r->call.id, "%s", id);
  r->call.done = variant_deleted;
  r->req = http_defer(req);
  inventory_variant_delete(api->d, &r->call);
}

/* ---- variants: reads
 * --------------------------------------------------------- */

static int render_variant(StoreTx *tx, ApiRead *r) {
  Variant v;
  memset(&v, 0, sizeof v);
  int rc = store_variant_get(tx, r->arg, &v);
  if (rc == 0) {
    json_t *j = json_pack("{s:o}", "variant", api_variant_json(&v));
    json_text_append(&r->out, j);
    json_decref(j);
  } else if (rc == RESTOCK_ENOTFOUND) {
    snprintf(r->message, sizeof r->message,
             "Variant with id: %.300s was not found", (const char *)r->arg);
  }
  variant_clear(&v);
  return rc;
}

/* GET /admin/variants/{id} */
void api_admin_variant_get(HttpRequest *req, void *data) {
  Api *api = data;
  const char *id = router_param(&req->match, "id");
  if (!domain_valid_id(id)) {
    http_respond_error(req, 404, "not_found",
                       "Variant with id: %s was not found", id);
    return;
  }
  api_read(api, req, render_variant, xstrdup(id), free);
}

typedef struct {
  VariantFilter f;
  char q[256];
  json_t *rows;
} VariantsList;

static int variant_row(void *ctx, const Variant *v, long long waiting) {
  VariantsList *l = ctx;
  json_t *j = api_variant_json(v);
  json_object_set_new(j, "waiting", json_integer(waiting));
  json_array_append_new(l->rows, j);
  return 0;
}

static int render_variants(StoreTx *tx, ApiRead *r) {
  VariantsList *l = r->arg;
  long long count = 0;
  l->rows = json_array();
  int rc = store_variant_list(tx, &l->f, variant_row, l, &count);
  if (rc == 0) {
    json_t *j = json_pack("{s:O, s:I, s:I, s:I}", "variants", l->rows, "count",
                          (json_int_t)count, "limit", (json_int_t)l->f.limit,
                          "offset", (json_int_t)l->f.offset);
    json_text_append(&r->out, j);
    json_decref(j);
  }
  json_decref(l->rows);
  l->rows = NULL;
  return rc;
}

/* GET /admin/variants?q=&sold_out=&limit=&offset= */
void api_admin_variants_get(HttpRequest *req, void *data) {
  VariantsList *l = xcalloc(1, sizeof *l);
  if (api_paging(req, &l->f.limit, &l->f.offset)) {
    free(l);
    return;
  }
  const char *q = url_pairs_get(&req->params, "q");
  const char *sold = url_pairs_get(&req->params, "sold_out");
  l->f.sold_out = -1;
  if (sold && strcmp(sold, "true") == 0)
    l->f.sold_out = 1;
  else if (sold && strcmp(sold, "false") == 0)
    l->f.sold_out = 0;
  else if (sold) {
    http_respond_error(req, 400, "invalid_data",
                       "sold_out must be true or false");
    free(l);
    return;
  }
  if (q && strlen(q) > DOMAIN_MAX_ID) {
    http_respond_error(req, 400, "invalid_data",
                       "q must be at most %d characters", DOMAIN_MAX_ID);
    free(l);
    return;
  }
  if (q && *q) {
    snprintf(l->q, sizeof l->q, "%s", q);
    l->f.q = l->q;
  }
  api_read(data, req, render_variants, l, free);
}

/* ---- subscriptions
 * ------------------------------------------------------------ */

typedef struct {
  SubscriptionFilter f;
  char variant_id[256], email[EMAIL_MAX + 1], channel[256];
  json_t *rows;
} NotificationsList;

static int notification_row(void *ctx, const SubscriptionRow *row) {
  NotificationsList *l = ctx;
  json_t *j = json_pack(
      "{s:s, s:o, s:s, s:s, s:s}", "variant_id", row->variant_id,
      "sales_channel_id",
      row->sales_channel_id ? json_string(row->sales_channel_id) : json_null(),
      "email", row->email, "created_at", row->created_at, "status",
      subscription_status_name(row->status));
  if (row->quantity > 0)
    json_object_set_new(j, "quantity", json_integer(row->quantity));
  if (row->locale) json_object_set_new(j, "locale", json_string(row->locale));
  /* A history row says when it ended, under its status's name. */
  static const char *const ended[] = {[SUB_NOTIFIED] = "notified_at",
                                      [SUB_CANCELLED] = "cancelled_at",
                                      [SUB_EXPIRED] = "expired_at"};
  if (row->notified_at && row->status >= SUB_NOTIFIED &&
      row->status <= SUB_EXPIRED)
    json_object_set_new(j, ended[row->status], json_string(row->notified_at));
  json_array_append_new(l->rows, j);
  return 0;
}

static int render_notifications(StoreTx *tx, ApiRead *r) {
  NotificationsList *l = r->arg;
  long long count = 0;
  l->rows = json_array();
  int rc = store_subscription_list(tx, &l->f, notification_row, l, &count);
  if (rc == 0) {
    json_t *j =
        json_pack("{s:O, s:I, s:I, s:I}", "restock_notifications", l->rows,
                  "count", (json_int_t)count, "limit", (json_int_t)l->f.limit,
                  "offset", (json_int_t)l->f.offset);
    json_text_append(&r->out, j);
    json_decref(j);
  }
  json_decref(l->rows);
  l->rows = NULL;
  return rc;
}

/* GET /admin/restock-notifications. Its count can walk a table: it runs
 * off the loop. */
void api_admin_notifications_get(HttpRequest *req, void *data) {
  NotificationsList *l = xcalloc(1, sizeof *l);
  SubscriptionFilter *f = &l->f;
  if (api_paging(req, &f->limit, &f->offset)) {
    free(l);
    return;
  }
  const char *status = url_pairs_get(&req->params, "status");
  f->status = SUB_ACTIVE;
  if (status) {
    size_t i = 0;
    while (i <= SUB_PENDING &&
           strcmp(status, subscription_status_name((SubscriptionStatus)i)))
      i++;
    if (i > SUB_PENDING) {
      http_respond_error(req, 400, "invalid_data",
                         "status must be active, pending, notified, expired "
                         "or cancelled");
      free(l);
      return;
    }
    f->status = (SubscriptionStatus)i;
  }
  const char *v = url_pairs_get(&req->params, "variant_id");
  const char *ch = url_pairs_get(&req->params, "sales_channel_id");
  const char *raw_email = url_pairs_get(&req->params, "email");
  if ((v && strlen(v) > DOMAIN_MAX_ID) || (ch && strlen(ch) > DOMAIN_MAX_ID)) {
    /* No stored id is that long: the listing is empty. */
    v = v && strlen(v) > DOMAIN_MAX_ID ? "\x01" : v;
    ch = ch && strlen(ch) > DOMAIN_MAX_ID ? "\x01" : ch;
  }
  if (v) {
    snprintf(l->variant_id, sizeof l->variant_id, "%s", v);
    f->variant_id = l->variant_id;
  }
  if (ch) {
    snprintf(l->channel, sizeof l->channel, "%s", ch);
    f->sales_channel_id = l->channel;
  }
  if (raw_email) {
    /* Stored emails are normalized; an unparseable one matches nothing. */
    if (email_normalize(raw_email, strlen(raw_email), l->email, NULL))
      l->email[0] = '\0';
    f->email = l->email;
  }
  api_read(data, req, render_notifications, l, free);
}

typedef struct {
  EraseCall call;
  HttpRequest *req;
} EraseReq;

static void erased(EraseCall *c, int status) {
  EraseReq *r = (EraseReq *)c;
  if (status) {
    api_fail(r->req, status, NULL);
  } else {
    /* The answer keeps the contract's shape; the events changed are only
     * logged. */
    if (c->scrubbed)
      log_info("forgot an email: %lld subscriptions, %lld events", c->deleted,
               c->scrubbed);
    http_respond_json(r->req, 200,
                      json_pack("{s:I}", "deleted", (json_int_t)c->deleted));
  }
  free(c->variant_id);
  free(r);
}

/* DELETE /admin/restock-notifications?email=E[&variant_id=V] */
void api_admin_notifications_delete(HttpRequest *req, void *data) {
  Api *api = data;
  const char *raw_email = url_pairs_get(&req->params, "email");
  const char *variant = url_pairs_get(&req->params, "variant_id");
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
  if (variant && !domain_valid_id(variant)) {
    http_respond_json(req, 200, json_pack("{s:i}", "deleted", 0));
    return;
  }
  EraseReq *r = xcalloc(1, sizeof *r);
  memcpy(r->call.email, email, sizeof email);
  r->call.variant_id = variant ? xstrdup(variant) : NULL;
  r->call.done = erased;
  r->req = http_defer(req);
  subscriptions_erase(api->d, &r->call);
}

/* ---- events -----------------------------------------------------------------
 */

typedef struct {
  char name[256];
  const char *name_filter;
  const char *status;
  long long limit, offset;
  json_t *rows;
  json_t *current; /* the event whose deliveries come next */
} EventsList;

static int event_row(void *ctx, const EventRow *e) {
  EventsList *l = ctx;
  l->current = api_event_json(e);
  json_array_append_new(l->rows, l->current);
  return 0;
}

static int delivery_row(void *ctx, const DeliveryRow *d) {
  EventsList *l = ctx;
  json_array_append_new(json_object_get(l->current, "deliveries"),
                        api_delivery_json(d));
  return 0;
}

static int render_events(StoreTx *tx, ApiRead *r) {
  EventsList *l = r->arg;
  long long count = 0;
  l->rows = json_array();
  EventVisitor v = {event_row, delivery_row, l};
  int rc = store_event_list(tx, l->name_filter, l->status, l->limit, l->offset,
                            &v, &count);
  if (rc == 0) {
    json_t *j = json_pack("{s:O, s:I, s:I, s:I}", "events", l->rows, "count",
                          (json_int_t)count, "limit", (json_int_t)l->limit,
                          "offset", (json_int_t)l->offset);
    json_text_append(&r->out, j);
    json_decref(j);
  }
  json_decref(l->rows);
  l->rows = NULL;
  return rc;
}

/* GET /admin/events?name=&status=&limit=&offset=. Off the loop, as the
 * count of all events walks the table. */
void api_admin_events_get(HttpRequest *req, void *data) {
  EventsList *l = xcalloc(1, sizeof *l);
  if (api_paging(req, &l->limit, &l->offset)) {
    free(l);
    return;
  }
  const char *status = url_pairs_get(&req->params, "status");
  if (status && strcmp(status, "pending") && strcmp(status, "delivered") &&
      strcmp(status, "dead")) {
    http_respond_error(req, 400, "invalid_data",
                       "status must be pending, delivered or dead");
    free(l);
    return;
  }
  /* The read keeps copies of what it uses, not pointers into the
   * request. */
  l->status = status ? (strcmp(status, "pending") == 0 ? "pending"
                        : strcmp(status, "dead") == 0  ? "dead"
                                                       : "delivered")
                     : NULL;
  /* A variant's restocked events (the console's variant page). */
  const char *variant = url_pairs_get(&req->params, "variant_id");
  if (variant) {
    api_admin_events_variant(req, data, variant, l->status, l->limit,
                             l->offset);
    free(l);
    return;
  }
  const char *name = url_pairs_get(&req->params, "name");
  if (name) {
    snprintf(l->name, sizeof l->name, "%s", name);
    l->name_filter = l->name;
  }
  api_read(data, req, render_events, l, free);
}

typedef struct {
  RetryCall call;
  HttpRequest *req;
} RetryReq;

static void retried(RetryCall *c, int status) {
  RetryReq *r = (RetryReq *)c;
  if (status == RESTOCK_ENOTFOUND)
    http_respond_error(r->req, 404, "not_found",
                       "Event with id: %lld was not found", c->event_id);
  else if (status)
    api_fail(r->req, status, NULL);
  else
    http_respond_json(r->req, 200,
                      json_pack("{s:I, s:I}", "id", (json_int_t)c->event_id,
                                "requeued", (json_int_t)c->requeued));
  free(r);
}

/* POST /admin/events/{id}/retry: requeues the event's dead deliveries. */
void api_admin_event_retry(HttpRequest *req, void *data) {
  Api *api = data;
  const char *raw = router_param(&req->match, "id");
  if (strspn(raw, "0123456789") != strlen(raw) || strlen(raw) > 15 || !*raw) {
    http_respond_error(req, 404, "not_found", "Event with id: %s was not found",
                       raw);
    return;
  }
  RetryReq *r = xcalloc(1, sizeof *r);
  r->call.event_id = strtoll(raw, NULL, 10);
  r->call.done = retried;
  r->req = http_defer(req);
  outbox_retry(api->d, &r->call);
}

/* ---- GET /admin/nodes (issue 14) -------------------------------------------
 */

static int node_row(void *ctx, const NodeRow *row) {
  json_array_append_new(
      ctx, json_pack("{s:s, s:s, s:s, s:s}", "id", row->id, "started_at",
                     row->started_at, "last_seen_at", row->last_seen_at,
                     "version", row->version));
  return 0;
}

static int render_nodes(StoreTx *tx, ApiRead *r) {
  json_t *nodes = json_array();
  int rc = store_node_list(tx, node_row, nodes);
  if (rc == 0) {
    json_t *j = json_pack("{s:o}", "nodes", nodes);
    json_text_append(&r->out, j);
    json_decref(j);
  } else {
    json_decref(nodes);
  }
  return rc;
}

/* The nodes sharing the database, each with its last heartbeat. A SQLite
 * file serves one node: this one, seen now. */
void api_admin_nodes_get(HttpRequest *req, void *data) {
  Api *api = data;
  if (store_shared(api->d->store)) {
    api_read(api, req, render_nodes, NULL, NULL);
    return;
  }
  char now[ISOTIME_LEN];
  isotime_now(now);
  const Node *n = api->d->node;
  http_respond_json(req, 200,
                    json_pack("{s:[{s:s, s:s, s:s, s:s}]}", "nodes", "id",
                              n ? node_id(n) : "local", "started_at",
                              n ? node_started_at(n) : now, "last_seen_at", now,
                              "version", RESTOCKD_VERSION));
}
