/* The multi-warehouse admin routes: stock locations, sales channels,
 * inventory levels, publishable API keys, and batch inventory updates. */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "engine.h"
#include "isotime.h"
#include "outbox.h"
#include "xmalloc.h"

/* Most updates one batch request may carry. */
#define MAX_BATCH 10000
/* Longest name of a location or a channel. */
#define MAX_NAME 1024

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
  if (!json_is_string(id) || !api_valid_id(json_string_value(id))) {
    http_respond_error(req, 400, "invalid_data",
                       "id must be a string of 1 to %d characters", API_MAX_ID);
    return NULL;
  }
  return xstrdup(json_string_value(id));
}

/* The body's "name": *name NULL when absent. Returns 0 or -1 (answered). */
static int body_name(HttpRequest *req, json_t *body, const char **name) {
  json_t *j = json_object_get(body, "name");
  *name = NULL;
  if (!j || json_is_null(j)) return 0;
  if (!json_is_string(j) || json_string_length(j) > MAX_NAME) {
    http_respond_error(req, 400, "invalid_data",
                       "name must be a string of at most %d characters",
                       MAX_NAME);
    return -1;
  }
  *name = json_string_value(j);
  return 0;
}

/* Checks that every entry of `ids` is a string naming an existing row
 * (`exists` tells). Returns 0; -1 having answered 400; or STORE_ERROR. */
static int check_ids(HttpRequest *req, App *app, json_t *ids, const char *field,
                     const char *what,
                     int (*exists)(Store *, const char *, bool *)) {
  if (!json_is_array(ids) || json_array_size(ids) > 1000) {
    http_respond_error(req, 400, "invalid_data",
                       "%s must be an array of at most 1000 ids", field);
    return -1;
  }
  size_t i;
  json_t *id;
  json_array_foreach(ids, i, id) {
    bool found = false;
    if (!json_is_string(id) || !api_valid_id(json_string_value(id))) {
      http_respond_error(req, 400, "invalid_data", "%s[%zu] must be an id",
                         field, i);
      return -1;
    }
    if (exists(app->store, json_string_value(id), &found)) return STORE_ERROR;
    if (!found) {
      http_respond_error(req, 400, "invalid_data",
                         "%s[%zu]: %s with id: %s was not found", field, i,
                         what, json_string_value(id));
      return -1;
    }
  }
  return 0;
}

/* POST /admin/stock-locations {id, name} */
void api_admin_locations_post(HttpRequest *req, void *data) {
  App *app = data;
  static const char *const fields[] = {"id", "name", NULL};
  json_t *body = api_json_body(req), *out = NULL;
  const char *name = NULL;
  char *id = NULL;
  if (!body || only_fields(req, body, fields) || body_name(req, body, &name) ||
      !(id = body_id(req, body, "sloc")))
    goto done;
  if (store_begin(app->store) ||
      store_location_put(app->store, id, name, &out) ||
      store_commit(app->store)) {
    store_rollback(app->store);
    api_store_failed(req);
    goto done;
  }
  http_respond_json(req, 200, json_pack("{s:o}", "stock_location", out));
done:
  free(id);
  json_decref(body);
}

/* POST /admin/sales-channels {id, name, location_ids}: location_ids replaces
 * the channel's locations. A location newly linked can raise the channel's
 * quantity, so the variants stocked there with subscribers in the channel
 * get a restock check. */
void api_admin_channels_post(HttpRequest *req, void *data) {
  App *app = data;
  static const char *const fields[] = {"id", "name", "location_ids", NULL};
  json_t *body = api_json_body(req), *out = NULL, *added = NULL;
  const char *name = NULL;
  char *id = NULL;
  if (!body || only_fields(req, body, fields) || body_name(req, body, &name) ||
      !(id = body_id(req, body, "sc")))
    goto done;
  json_t *locations = json_object_get(body, "location_ids");
  int rc = 0;
  if (locations)
    rc = check_ids(req, app, locations, "location_ids", "Stock location",
                   store_location_exists);
  if (rc == -1) goto done;
  if (rc == 0) rc = store_begin(app->store);
  if (rc == 0)
    rc = store_channel_put(app->store, id, name, locations, &out, &added);
  size_t i;
  json_t *loc;
  json_array_foreach(added, i, loc) {
    json_t *variants = NULL;
    if (rc == 0)
      rc = store_variants_to_check(app->store, json_string_value(loc), id,
                                   &variants);
    size_t j;
    json_t *variant;
    json_array_foreach(variants, j, variant) {
      if (rc == 0) rc = engine_schedule_check(app, json_string_value(variant));
    }
    json_decref(variants);
  }
  if (rc == 0) rc = store_commit(app->store);
  if (rc) {
    store_rollback(app->store);
    json_decref(out);
    api_store_failed(req);
    goto done;
  }
  api_after_commit(app);
  http_respond_json(req, 200, json_pack("{s:o}", "sales_channel", out));
done:
  json_decref(added);
  free(id);
  json_decref(body);
}

/* POST /admin/publishable-api-keys {id, sales_channel_ids} */
void api_admin_keys_post(HttpRequest *req, void *data) {
  App *app = data;
  static const char *const fields[] = {"id", "sales_channel_ids", NULL};
  json_t *body = api_json_body(req), *out = NULL;
  char *id = NULL;
  if (!body || only_fields(req, body, fields) ||
      !(id = body_id(req, body, "pk")))
    goto done;
  /* Without sales_channel_ids a key keeps its channels (a new one has
   * none), as a sales channel keeps its locations without location_ids. */
  json_t *channels = json_object_get(body, "sales_channel_ids");
  int rc = channels ? check_ids(req, app, channels, "sales_channel_ids",
                                "Sales channel", store_channel_exists)
                    : 0;
  if (rc == 0) rc = store_begin(app->store);
  if (rc == 0) rc = store_key_put(app->store, id, channels, &out);
  if (rc == 0) rc = store_commit(app->store);
  if (rc == -1) goto done;
  if (rc) {
    store_rollback(app->store);
    api_store_failed(req);
    goto done;
  }
  http_respond_json(req, 200, json_pack("{s:o}", "publishable_api_key", out));
done:
  free(id);
  json_decref(body);
}

/* The outcome of one inventory update. */
typedef struct {
  char err[256]; /* set when the update is refused (-1) */
} UpdateError;

/* Writes product-variant.updated for an inventory change and schedules a
 * restock check when the available quantity rose. */
static int after_quantity_change(App *app, const char *variant_id,
                                 bool quantity_changed, bool rose) {
  int rc = 0;
  if (quantity_changed) {
    json_t *data = json_pack("{s:s, s:[s]}", "id", variant_id, "fields",
                             "inventory_quantity");
    rc = outbox_write(app, "product-variant.updated", data);
    json_decref(data);
  }
  if (rc == 0 && rose) rc = engine_schedule_check(app, variant_id);
  return rc;
}

/* Reads an optional non-negative integer field. Returns 0 (*present says
 * whether it was there) or -1 with `e` set. */
static int quantity_field(json_t *obj, const char *name, long long *out,
                          bool *present, UpdateError *e) {
  json_t *j = json_object_get(obj, name);
  *present = j != NULL;
  if (!j) return 0;
  if (!json_is_integer(j) || json_integer_value(j) < 0) {
    snprintf(e->err, sizeof e->err, "%s must be a non-negative integer", name);
    return -1;
  }
  *out = json_integer_value(j);
  return 0;
}

/* Sets the level of (variant, location) from `obj` inside the caller's
 * transaction: stocked_quantity and reserved_quantity, each optional (kept,
 * or 0 for a new level). Keeps the variant's inventory_quantity equal to the
 * sum of its levels. Returns 0; -1 with `e` for bad input; STORE_ERROR. */
static int level_update(App *app, json_t *obj, json_t **out, UpdateError *e) {
  json_t *jv = json_object_get(obj, "variant_id");
  json_t *jl = json_object_get(obj, "location_id");
  if (!json_is_string(jv) || !json_is_string(jl)) {
    snprintf(e->err, sizeof e->err,
             "variant_id and location_id are required strings");
    return -1;
  }
  const char *variant_id = json_string_value(jv);
  const char *location_id = json_string_value(jl);
  long long stocked = 0, reserved = 0;
  bool has_stocked, has_reserved;
  if (quantity_field(obj, "stocked_quantity", &stocked, &has_stocked, e) ||
      quantity_field(obj, "reserved_quantity", &reserved, &has_reserved, e))
    return -1;
  Variant v;
  memset(&v, 0, sizeof v);
  int rc = store_variant_get(app->store, variant_id, &v);
  bool existed_levels = v.has_levels;
  long long before_total = v.inventory_quantity;
  variant_clear(&v);
  if (rc == STORE_NOT_FOUND) {
    snprintf(e->err, sizeof e->err, "Variant with id: %.100s was not found",
             variant_id);
    return -1;
  }
  if (rc) return rc;
  bool exists = false;
  rc = store_location_exists(app->store, location_id, &exists);
  if (rc) return rc;
  if (!exists) {
    snprintf(e->err, sizeof e->err,
             "Stock location with id: %.100s was not found", location_id);
    return -1;
  }
  long long old_stocked = 0, old_reserved = 0;
  rc = store_level_get(app->store, variant_id, location_id, &old_stocked,
                       &old_reserved);
  if (rc != 0 && rc != STORE_NOT_FOUND) return rc;
  if (!has_stocked) stocked = old_stocked;
  if (!has_reserved) reserved = old_reserved;
  long long before = 0, total = 0;
  rc = store_level_put(app->store, variant_id, location_id, stocked, reserved,
                       &before, out);
  if (rc == 0) rc = store_variant_sync_levels(app->store, variant_id, &total);
  /* The first level makes a variant multi-warehouse: its quantity becomes
   * the sum of its levels, whatever inventory_quantity said before. */
  bool changed = total != before_total;
  bool rose =
      stocked - reserved > before || (!existed_levels && total > before_total);
  if (rc == 0) rc = after_quantity_change(app, variant_id, changed, rose);
  return rc;
}

/* Sets inventory_quantity of a variant without levels. Returns 0; -1 with
 * `e`; STORE_ERROR. */
static int quantity_update(App *app, json_t *obj, UpdateError *e) {
  json_t *jv = json_object_get(obj, "variant_id");
  json_t *jq = json_object_get(obj, "inventory_quantity");
  if (!json_is_string(jv)) {
    snprintf(e->err, sizeof e->err, "variant_id is a required string");
    return -1;
  }
  if (!json_is_integer(jq)) {
    snprintf(e->err, sizeof e->err, "inventory_quantity must be an integer");
    return -1;
  }
  Variant v;
  memset(&v, 0, sizeof v);
  int rc = store_variant_get(app->store, json_string_value(jv), &v);
  if (rc == STORE_NOT_FOUND)
    snprintf(e->err, sizeof e->err, "Variant with id: %.100s was not found",
             json_string_value(jv));
  else if (rc == 0 && v.has_levels)
    snprintf(e->err, sizeof e->err,
             "variant %.100s has inventory levels: its inventory_quantity is "
             "their sum; update the levels instead",
             v.id);
  if (rc == STORE_NOT_FOUND || (rc == 0 && v.has_levels)) {
    variant_clear(&v);
    return -1;
  }
  long long before = v.inventory_quantity, now = json_integer_value(jq);
  if (rc == 0 && before != now) {
    isotime_now(v.updated_at);
    rc = store_variant_set_quantity(app->store, v.id, now, v.updated_at);
    if (rc == 0) rc = after_quantity_change(app, v.id, true, now > before);
  }
  variant_clear(&v);
  return rc;
}

/* POST /admin/inventory-levels {variant_id, location_id, stocked_quantity,
 * reserved_quantity} */
void api_admin_levels_post(HttpRequest *req, void *data) {
  App *app = data;
  static const char *const fields[] = {"variant_id", "location_id",
                                       "stocked_quantity", "reserved_quantity",
                                       NULL};
  json_t *body = api_json_body(req), *out = NULL;
  if (!body || only_fields(req, body, fields)) goto done;
  UpdateError e = {""};
  int rc = store_begin(app->store);
  if (rc == 0) rc = level_update(app, body, &out, &e);
  if (rc == 0) rc = store_commit(app->store);
  if (rc) {
    store_rollback(app->store);
    json_decref(out);
    if (rc == -1)
      http_respond_error(req, 400, "invalid_data", "%s", e.err);
    else
      api_store_failed(req);
    goto done;
  }
  api_after_commit(app);
  http_respond_json(req, 200, json_pack("{s:o}", "inventory_level", out));
done:
  json_decref(body);
}

/* POST /admin/inventory/batch {"updates": [...]}: all or nothing. */
void api_admin_batch_post(HttpRequest *req, void *data) {
  App *app = data;
  static const char *const fields[] = {"updates", NULL};
  static const char *const level_fields[] = {"variant_id", "location_id",
                                             "stocked_quantity",
                                             "reserved_quantity", NULL};
  static const char *const quantity_fields[] = {"variant_id",
                                                "inventory_quantity", NULL};
  json_t *body = api_json_body(req);
  if (!body || only_fields(req, body, fields)) goto done;
  json_t *updates = json_object_get(body, "updates");
  if (!json_is_array(updates) || json_array_size(updates) == 0 ||
      json_array_size(updates) > MAX_BATCH) {
    http_respond_error(req, 400, "invalid_data",
                       "updates must be an array of 1 to %d updates",
                       MAX_BATCH);
    goto done;
  }
  UpdateError e = {""};
  size_t i = 0;
  int rc = store_begin(app->store);
  for (; rc == 0 && i < json_array_size(updates); i++) {
    json_t *u = json_array_get(updates, i);
    if (!json_is_object(u)) {
      snprintf(e.err, sizeof e.err, "an update must be a JSON object");
      rc = -1;
      break;
    }
    bool is_level = json_object_get(u, "location_id") != NULL;
    const char *const *allowed = is_level ? level_fields : quantity_fields;
    const char *key;
    json_t *value;
    json_object_foreach(u, key, value) {
      size_t k = 0;
      while (allowed[k] && strcmp(allowed[k], key) != 0) k++;
      if (!allowed[k]) {
        snprintf(e.err, sizeof e.err, "unknown field '%.64s'", key);
        rc = -1;
      }
    }
    if (rc == 0)
      rc = is_level ? level_update(app, u, NULL, &e)
                    : quantity_update(app, u, &e);
    if (rc) break;
  }
  if (rc == 0) rc = store_commit(app->store);
  if (rc) {
    store_rollback(app->store);
    if (rc == -1)
      http_respond_error(req, 400, "invalid_data", "updates[%zu]: %s", i,
                         e.err);
    else
      api_store_failed(req);
    goto done;
  }
  api_after_commit(app);
  http_respond_json(
      req, 200,
      json_pack("{s:I}", "updated", (json_int_t)json_array_size(updates)));
done:
  json_decref(body);
}
