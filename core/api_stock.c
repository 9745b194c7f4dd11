/* The multi-warehouse admin routes: stock locations, sales channels,
 * inventory levels, publishable API keys, and batch inventory updates. */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "inventory.h"
#include "json_text.h"
#include "url.h"
#include "xmalloc.h"

/* Most updates one batch request may carry. */
#define MAX_BATCH 10000
/* Longest name of a location or a channel. */
#define MAX_NAME 1024
/* Most ids in a channel's location_ids or a key's sales_channel_ids. */
#define MAX_IDS 1000

/* A new id "PREFIX_" + 26 random hex digits, for a POST without one. */
static char *new_id(const char *prefix) {
  unsigned char raw[13];
  char hex[27];
  RAND_bytes(raw, sizeof raw);
  for (size_t i = 0; i < sizeof raw; i++)
    snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  return xasprintf("%s_%s", prefix, hex);
}

/* Checks that `obj` has only the keys listed in `allowed` (NULL-ended).
 * Returns 0, or -1 having answered 400. */
static int only_fields(HttpRequest *req, json_t *obj,
                       const char *const *allowed) {
  const char *key;
  json_t *value;
  json_object_foreach(obj, key, value) {
    size_t i = 0;
    while (allowed[i] && strcmp(allowed[i], key) != 0) i++;
    if (!allowed[i]) {
      http_respond_error(req, 400, "invalid_data", "unknown field '%.64s'",
                         key);
      return -1;
    }
  }
  return 0;
}

/* The body's "id": a valid id, or a new one when absent. Returns a new
 * string, or NULL having answered 400. */
static char *body_id(HttpRequest *req, json_t *body, const char *prefix) {
  json_t *id = json_object_get(body, "id");
  if (!id) return new_id(prefix);
  if (!json_is_string(id) || !domain_valid_id(json_string_value(id))) {
    http_respond_error(req, 400, "invalid_data",
                       "id must be a string of 1 to %d characters",
                       DOMAIN_MAX_ID);
    return NULL;
  }
  return xstrdup(json_string_value(id));
}

/* The body's "name": *name NULL when absent. Returns 0 or -1 (answered). */
static int body_name(HttpRequest *req, json_t *body, char **name) {
  json_t *j = json_object_get(body, "name");
  *name = NULL;
  if (!j || json_is_null(j)) return 0;
  if (!json_is_string(j) || json_string_length(j) > MAX_NAME ||
      strlen(json_string_value(j)) != json_string_length(j)) {
    http_respond_error(req, 400, "invalid_data",
                       "name must be a string of at most %d characters",
                       MAX_NAME);
    return -1;
  }
  *name = xstrdup(json_string_value(j));
  return 0;
}

/* A list of ids in the body (`field`), or NULL when absent. Returns 0 or -1
 * having answered 400. */
static int body_ids(HttpRequest *req, json_t *body, const char *field,
                    StrList **out) {
  json_t *ids = json_object_get(body, field);
  *out = NULL;
  if (!ids) return 0;
  if (!json_is_array(ids) || json_array_size(ids) > MAX_IDS) {
    http_respond_error(req, 400, "invalid_data",
                       "%s must be an array of at most %d ids", field, MAX_IDS);
    return -1;
  }
  StrList *l = xcalloc(1, sizeof *l);
  size_t i;
  json_t *id;
  json_array_foreach(ids, i, id) {
    if (!json_is_string(id) || !domain_valid_id(json_string_value(id))) {
      http_respond_error(req, 400, "invalid_data", "%s[%zu] must be an id",
                         field, i);
      strlist_clear(l);
      free(l);
      return -1;
    }
    if (!strlist_has(l, json_string_value(id)))
      strlist_push(l, json_string_value(id));
  }
  *out = l;
  return 0;
}

/* ---- locations, channels, keys ------------------------------------------- */

typedef struct {
  NamedCall call;
  HttpRequest *req;
} NamedReq;

static json_t *ids_json(const StrList *l) {
  json_t *a = json_array();
  for (size_t i = 0; i < l->n; i++)
    json_array_append_new(a, json_string(l->items[i]));
  return a;
}

/* The row as the API shows it. */
static json_t *named_json(NamedPutKind kind, const NamedRow *r) {
  if (kind == NAMED_PUT_KEY)
    return json_pack("{s:s, s:o}", "id", r->id, "sales_channel_ids",
                     ids_json(&r->ids));
  json_t *j =
      json_pack("{s:s, s:o, s:s, s:s}", "id", r->id, "name",
                r->name ? json_string(r->name) : json_null(), "created_at",
                r->created_at, "updated_at", r->updated_at);
  if (kind == NAMED_PUT_CHANNEL)
    json_object_set_new(j, "location_ids", ids_json(&r->ids));
  return j;
}

static const char *const named_keys[] = {"stock_location", "sales_channel",
                                         "publishable_api_key"};

static void named_done(NamedCall *c, int status) {
  NamedReq *r = (NamedReq *)c;
  if (status)
    api_fail(r->req, status, c->message);
  else if (c->remove)
    http_respond_json(r->req, 200, json_pack("{s:b}", "deleted", 1));
  else
    http_respond_json(
        r->req, 200,
        json_pack("{s:o}", named_keys[c->kind], named_json(c->kind, &c->out)));
  named_call_clear(c);
  free(r);
}

static void start_named(Api *api, HttpRequest *req, NamedPutKind kind, char *id,
                        char *name, StrList *ids, bool remove) {
  NamedReq *r = xcalloc(1, sizeof *r);
  r->call.kind = kind;
  r->call.id = id;
  r->call.name = name;
  r->call.ids = ids;
  r->call.remove = remove;
  r->call.done = named_done;
  r->req = http_defer(req);
  inventory_named(api->d, &r->call);
}

/* POST /admin/stock-locations {id, name} */
void api_admin_locations_post(HttpRequest *req, void *data) {
  static const char *const fields[] = {"id", "name", NULL};
  json_t *body = api_json_body(req);
  char *name = NULL, *id = NULL;
  if (body && only_fields(req, body, fields) == 0 &&
      body_name(req, body, &name) == 0 && (id = body_id(req, body, "sloc"))) {
    start_named(data, req, NAMED_PUT_LOCATION, id, name, NULL, false);
    name = NULL;
  }
  free(name);
  json_decref(body);
}

/* POST /admin/sales-channels {id, name, location_ids}: location_ids replaces
 * the channel's locations. */
void api_admin_channels_post(HttpRequest *req, void *data) {
  static const char *const fields[] = {"id", "name", "location_ids", NULL};
  json_t *body = api_json_body(req);
  char *name = NULL, *id = NULL;
  StrList *ids = NULL;
  if (body && only_fields(req, body, fields) == 0 &&
      body_name(req, body, &name) == 0 &&
      body_ids(req, body, "location_ids", &ids) == 0 &&
      (id = body_id(req, body, "sc"))) {
    start_named(data, req, NAMED_PUT_CHANNEL, id, name, ids, false);
    name = NULL;
    ids = NULL;
  }
  free(name);
  if (ids) {
    strlist_clear(ids);
    free(ids);
  }
  json_decref(body);
}

/* POST /admin/publishable-api-keys {id, sales_channel_ids} */
void api_admin_keys_post(HttpRequest *req, void *data) {
  static const char *const fields[] = {"id", "sales_channel_ids", NULL};
  json_t *body = api_json_body(req);
  char *id = NULL;
  StrList *ids = NULL;
  if (body && only_fields(req, body, fields) == 0 &&
      body_ids(req, body, "sales_channel_ids", &ids) == 0 &&
      (id = body_id(req, body, "pk"))) {
    start_named(data, req, NAMED_PUT_KEY, id, NULL, ids, false);
    ids = NULL;
  }
  if (ids) {
    strlist_clear(ids);
    free(ids);
  }
  json_decref(body);
}

static void delete_named(HttpRequest *req, Api *api, NamedPutKind kind,
                         const char *what) {
  const char *id = router_param(&req->match, "id");
  if (!domain_valid_id(id)) {
    http_respond_error(req, 404, "not_found", "%s with id: %s was not found",
                       what, id);
    return;
  }
  start_named(api, req, kind, xstrdup(id), NULL, NULL, true);
}

void api_admin_location_delete(HttpRequest *req, void *api) {
  delete_named(req, api, NAMED_PUT_LOCATION, "Stock location");
}
void api_admin_channel_delete(HttpRequest *req, void *api) {
  delete_named(req, api, NAMED_PUT_CHANNEL, "Sales channel");
}
void api_admin_key_delete(HttpRequest *req, void *api) {
  delete_named(req, api, NAMED_PUT_KEY, "Publishable API key");
}

typedef struct {
  NamedKind kind;
  long long limit, offset;
  json_t *rows;
} NamedList;

static int named_row_json(void *ctx, const NamedRow *row) {
  NamedList *l = ctx;
  static const NamedPutKind as_put[] = {NAMED_PUT_LOCATION, NAMED_PUT_CHANNEL,
                                        NAMED_PUT_KEY};
  json_t *j = named_json(as_put[l->kind], row);
  if (l->kind == NAMED_KEYS) {
    json_object_set_new(j, "created_at", json_string(row->created_at));
    json_object_set_new(j, "updated_at", json_string(row->updated_at));
  }
  json_array_append_new(l->rows, j);
  return 0;
}

static int render_named(StoreTx *tx, ApiRead *r) {
  static const char *const keys[] = {"stock_locations", "sales_channels",
                                     "publishable_api_keys"};
  NamedList *l = r->arg;
  long long count = 0;
  l->rows = json_array();
  int rc = store_named_list(tx, l->kind, l->limit, l->offset, named_row_json, l,
                            &count);
  if (rc == 0) {
    json_t *j =
        json_pack("{s:O, s:I, s:I, s:I}", keys[l->kind], l->rows, "count",
                  (json_int_t)count, "limit", (json_int_t)l->limit, "offset",
                  (json_int_t)l->offset);
    json_text_append(&r->out, j);
    json_decref(j);
  }
  json_decref(l->rows);
  l->rows = NULL;
  return rc;
}

static void list_named(HttpRequest *req, Api *api, NamedKind kind) {
  NamedList *l = xcalloc(1, sizeof *l);
  l->kind = kind;
  if (api_paging(req, &l->limit, &l->offset)) {
    free(l);
    return;
  }
  api_read(api, req, render_named, l, free);
}

void api_admin_locations_get(HttpRequest *req, void *api) {
  list_named(req, api, NAMED_LOCATIONS);
}
void api_admin_channels_get(HttpRequest *req, void *api) {
  list_named(req, api, NAMED_CHANNELS);
}
void api_admin_keys_get(HttpRequest *req, void *api) {
  list_named(req, api, NAMED_KEYS);
}

/* ---- inventory levels and batches ------------------------------------------
 */

static json_t *level_json(const char *variant_id, const char *location_id,
                          long long stocked, long long reserved,
                          const char *created_at, const char *updated_at) {
  return json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "variant_id",
                   variant_id, "location_id", location_id, "stocked_quantity",
                   (json_int_t)stocked, "reserved_quantity",
                   (json_int_t)reserved, "available_quantity",
                   (json_int_t)(stocked - reserved), "created_at", created_at,
                   "updated_at", updated_at);
}

typedef struct {
  InventoryCall call;
  HttpRequest *req;
  bool batch;
} InventoryReq;

static void inventory_done(InventoryCall *c, int status) {
  InventoryReq *r = (InventoryReq *)c;
  if (status) {
    api_fail(r->req, status, c->message);
  } else if (r->batch) {
    http_respond_json(r->req, 200,
                      json_pack("{s:I}", "updated", (json_int_t)c->updated));
  } else {
    const LevelOut *l = &c->level;
    http_respond_json(
        r->req, 200,
        json_pack("{s:o}", "inventory_level",
                  level_json(l->variant_id, l->location_id, l->stocked,
                             l->reserved, l->created_at, l->updated_at)));
  }
  inventory_call_clear(c);
  free(r);
}

static void start_inventory(Api *api, HttpRequest *req, json_t *updates,
                            bool batch) {
  InventoryReq *r = xcalloc(1, sizeof *r);
  r->call.updates = updates;
  r->call.wrapped = batch;
  r->call.done = inventory_done;
  r->batch = batch;
  r->req = http_defer(req);
  inventory_update(api->d, &r->call);
}

/* POST /admin/inventory-levels {variant_id, location_id, stocked_quantity,
 * reserved_quantity} */
void api_admin_levels_post(HttpRequest *req, void *data) {
  static const char *const fields[] = {"variant_id", "location_id",
                                       "stocked_quantity", "reserved_quantity",
                                       NULL};
  json_t *body = api_json_body(req);
  if (!body) return;
  if (only_fields(req, body, fields)) {
    json_decref(body);
    return;
  }
  if (!json_object_get(body, "location_id")) {
    http_respond_error(req, 400, "invalid_data",
                       "variant_id and location_id are required strings");
    json_decref(body);
    return;
  }
  json_t *updates = json_array();
  json_array_append_new(updates, body);
  start_inventory(data, req, updates, false);
}

/* POST /admin/inventory/batch {"updates": [...]}: all or nothing. */
void api_admin_batch_post(HttpRequest *req, void *data) {
  static const char *const fields[] = {"updates", NULL};
  json_t *body = api_json_body(req);
  if (!body) return;
  if (only_fields(req, body, fields)) {
    json_decref(body);
    return;
  }
  json_t *updates = json_object_get(body, "updates");
  if (!json_is_array(updates) || json_array_size(updates) == 0 ||
      json_array_size(updates) > MAX_BATCH) {
    http_respond_error(req, 400, "invalid_data",
                       "updates must be an array of 1 to %d updates",
                       MAX_BATCH);
    json_decref(body);
    return;
  }
  json_incref(updates);
  json_decref(body);
  start_inventory(data, req, updates, true);
}

typedef struct {
  char variant_id[256], location_id[256];
  json_t *rows;
} LevelsList;

static int level_row(void *ctx, const LevelRow *row) {
  LevelsList *l = ctx;
  json_array_append_new(
      l->rows, level_json(row->variant_id, row->location_id, row->stocked,
                          row->reserved, row->created_at, row->updated_at));
  return 0;
}

static int render_levels(StoreTx *tx, ApiRead *r) {
  LevelsList *l = r->arg;
  l->rows = json_array();
  int rc =
      store_level_list(tx, l->variant_id[0] ? l->variant_id : NULL,
                       l->variant_id[0] ? NULL : l->location_id, level_row, l);
  if (rc == 0) {
    json_t *j = json_pack("{s:O}", "inventory_levels", l->rows);
    json_text_append(&r->out, j);
    json_decref(j);
  }
  json_decref(l->rows);
  l->rows = NULL;
  return rc;
}

/* GET /admin/inventory-levels?variant_id= or ?location_id= */
void api_admin_levels_get(HttpRequest *req, void *data) {
  const char *v = url_pairs_get(&req->params, "variant_id");
  const char *loc = url_pairs_get(&req->params, "location_id");
  if ((!v && !loc) || (v && loc)) {
    http_respond_error(req, 400, "invalid_data",
                       "give variant_id or location_id (one of them)");
    return;
  }
  if ((v && !domain_valid_id(v)) || (loc && !domain_valid_id(loc))) {
    http_respond_json(req, 200, json_pack("{s:[]}", "inventory_levels"));
    return;
  }
  LevelsList *l = xcalloc(1, sizeof *l);
  if (v) snprintf(l->variant_id, sizeof l->variant_id, "%s", v);
  if (loc) snprintf(l->location_id, sizeof l->location_id, "%s", loc);
  api_read(data, req, render_levels, l, free);
}
