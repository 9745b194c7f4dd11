#include "inventory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "engine.h"
#include "json_text.h"
#include "outbox.h"
#include "stock.h"
#include "xmalloc.h"

/* Longest product_id, sku or title accepted. */
#define MAX_TEXT 1024

#define UPDATED "product-variant.updated"

/* ---- variants --------------------------------------------------------------
 */

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

/* Applies the fields of `obj` to `v`. Returns 0, or RESTOCK_EINVAL with a
 * sentence in `err`. An unknown field or a wrong type is an error; `id`,
 * when present, must be a valid id equal to `v->id`. */
static int variant_apply(Variant *v, json_t *obj, char *err, size_t errlen) {
  const char *key;
  json_t *value;
  json_object_foreach(obj, key, value) {
    size_t i = 0, n = sizeof variant_fields / sizeof *variant_fields;
    while (i < n && strcmp(variant_fields[i], key) != 0) i++;
    if (i == n) {
      snprintf(err, errlen, "unknown field '%.64s'", key);
      return RESTOCK_EINVAL;
    }
    if (strcmp(key, "id") == 0) {
      if (!json_is_string(value) ||
          !domain_valid_id(json_string_value(value))) {
        snprintf(err, errlen, "id must be a string of 1 to %d characters",
                 DOMAIN_MAX_ID);
        return RESTOCK_EINVAL;
      }
      if (v->id && strcmp(v->id, json_string_value(value)) != 0) {
        snprintf(err, errlen, "id does not match the id in the path");
        return RESTOCK_EINVAL;
      }
    } else if (strcmp(key, "product_id") == 0) {
      if (set_text(&v->product_id, value)) goto bad_text;
    } else if (strcmp(key, "sku") == 0) {
      if (set_text(&v->sku, value)) goto bad_text;
    } else if (strcmp(key, "title") == 0) {
      if (set_text(&v->title, value)) goto bad_text;
    } else if (strcmp(key, "inventory_quantity") == 0) {
      if (!json_is_integer(value) ||
          json_integer_value(value) > INVENTORY_MAX ||
          json_integer_value(value) < -INVENTORY_MAX) {
        snprintf(err, errlen,
                 "inventory_quantity must be an integer from -%lld to %lld",
                 INVENTORY_MAX, INVENTORY_MAX);
        return RESTOCK_EINVAL;
      }
      v->inventory_quantity = json_integer_value(value);
    } else {
      if (!json_is_boolean(value)) {
        snprintf(err, errlen, "%s must be a boolean", key);
        return RESTOCK_EINVAL;
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
    return RESTOCK_EINVAL;
  }
  return 0;
}

/* The names of the fields that differ between `a` and `b`. */
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

/* Upserts one variant from `obj`. `id` is the path's id, or NULL to take it
 * from the object. An update writes product-variant.updated with the
 * changed fields, and a quantity that rose schedules a restock check.
 * Returns 0, RESTOCK_EINVAL or RESTOCK_ENOTFOUND (the variant is of another
 * product) with `err`, or a store error. */
static int upsert_one(StoreTx *tx, Unit *u, const char *id,
                      const char *product_id, json_t *obj, Variant *out,
                      char *err, size_t errlen) {
  if (errlen < 512) return RESTOCK_EINVAL; /* room for every message */
  if (!json_is_object(obj)) {
    snprintf(err, errlen, "a variant must be a JSON object");
    return RESTOCK_EINVAL;
  }
  if (!id) {
    json_t *jid = json_object_get(obj, "id");
    if (!json_is_string(jid) || !domain_valid_id(json_string_value(jid))) {
      snprintf(err, errlen, "id is required: a string of 1 to %d characters",
               DOMAIN_MAX_ID);
      return RESTOCK_EINVAL;
    }
    id = json_string_value(jid);
  }
  int rc = store_variant_get(tx, id, out);
  bool exists = rc == 0;
  if (rc == RESTOCK_ENOTFOUND) {
    memset(out, 0, sizeof *out);
    out->id = xstrdup(id);
    out->manage_inventory = true;
    isotime_now(out->created_at);
    rc = 0;
  }
  if (rc) return rc;
  Variant before;
  variant_copy(&before, out);
  if (product_id) {
    if (exists && out->product_id && strcmp(out->product_id, product_id)) {
      snprintf(err, errlen,
               "Variant with id: %.200s was not found in product %.200s", id,
               product_id);
      rc = RESTOCK_ENOTFOUND;
      goto out;
    }
    json_t *pid = json_object_get(obj, "product_id");
    if (pid && !(json_is_string(pid) &&
                 strcmp(json_string_value(pid), product_id) == 0)) {
      snprintf(err, errlen, "product_id does not match the path");
      rc = RESTOCK_EINVAL;
      goto out;
    }
    free(out->product_id);
    out->product_id = xstrdup(product_id);
  }
  if (out->has_levels && json_object_get(obj, "inventory_quantity")) {
    snprintf(err, errlen,
             "variant %.100s has inventory levels: its inventory_quantity is "
             "their sum; update the levels instead",
             out->id);
    rc = RESTOCK_EINVAL;
    goto out;
  }
  rc = variant_apply(out, obj, err, errlen);
  if (rc) goto out;
  json_t *fields = changed_fields(&before, out);
  if (exists && json_array_size(fields) == 0) {
    json_decref(fields);
    goto out; /* nothing changed: nothing written, nothing emitted */
  }
  isotime_now(out->updated_at);
  rc = store_variant_put(tx, out);
  if (rc == 0 && exists) {
    json_t *data = json_pack("{s:s, s:O}", "id", out->id, "fields", fields);
    rc = outbox_write(tx, u, UPDATED, data, 0, NULL);
    json_decref(data);
  }
  json_decref(fields);
  if (rc == 0 && exists && stock_quantity(out) > stock_quantity(&before))
    rc = engine_schedule_check(tx, u, out->id);
out:
  variant_clear(&before);
  return rc;
}

void upsert_call_clear(UpsertCall *c) {
  json_decref(c->variants);
  free(c->id);
  free(c->product_id);
  for (size_t i = 0; i < c->nout; i++) variant_clear(&c->out[i]);
  free(c->out);
  c->variants = NULL;
  c->id = c->product_id = NULL;
  c->out = NULL;
  c->nout = 0;
}

static int upsert_fn(StoreTx *tx, void *arg) {
  UpsertCall *c = arg;
  size_t n = json_array_size(c->variants);
  c->out = xcalloc(n ? n : 1, sizeof *c->out);
  char err[512] = "";
  for (size_t i = 0; i < n; i++) {
    int rc =
        upsert_one(tx, &c->unit, c->id, c->product_id,
                   json_array_get(c->variants, i), &c->out[i], err, sizeof err);
    c->nout = i + 1;
    if (rc) {
      if (c->wrapped)
        snprintf(c->message, sizeof c->message, "variants[%zu]: %.480s", i,
                 err);
      else
        snprintf(c->message, sizeof c->message, "%s", err);
      return rc;
    }
  }
  return 0;
}

static void upsert_finish(Unit *u, int status) {
  UpsertCall *c = (UpsertCall *)u;
  c->done(c, status);
}

void inventory_upsert(Domain *d, UpsertCall *c) {
  c->message[0] = '\0';
  unit_write(d, &c->unit, upsert_fn, upsert_finish);
}

/* ---- inventory updates --------------------------------------------------- */

static const char *const level_fields[] = {
    "variant_id", "location_id", "stocked_quantity", "reserved_quantity", NULL};
static const char *const quantity_fields[] = {"variant_id",
                                              "inventory_quantity", NULL};

/* Writes product-variant.updated for an inventory change and schedules a
 * restock check when the available quantity rose. */
static int after_quantity_change(StoreTx *tx, Unit *u, const char *variant_id,
                                 bool quantity_changed, bool rose) {
  int rc = 0;
  if (quantity_changed) {
    /* Written as text at once: a batch writes 10,000 of these in a unit,
     * and a jansson tree made, printed and freed for each was a tenth of
     * its time on the writer. */
    Buf data = {0};
    buf_puts(&data, "{\"id\":");
    json_text_cstring(&data, variant_id);
    buf_puts(&data, ",\"fields\":[\"inventory_quantity\"]}");
    rc = outbox_write_text(tx, u, UPDATED, data.data, NULL, 0, NULL, NULL, 0,
                           NULL);
    buf_free(&data);
  }
  if (rc == 0 && rose) rc = engine_schedule_check(tx, u, variant_id);
  return rc;
}

/* Reads an optional quantity field (0 to INVENTORY_MAX). Returns 0
 * (*present says whether it was there) or RESTOCK_EINVAL with `err`. */
static int quantity_field(json_t *obj, const char *name, long long *out,
                          bool *present, char *err, size_t errlen) {
  json_t *j = json_object_get(obj, name);
  *present = j != NULL;
  if (!j) return 0;
  if (!json_is_integer(j) || json_integer_value(j) < 0 ||
      json_integer_value(j) > INVENTORY_MAX) {
    snprintf(err, errlen, "%s must be an integer from 0 to %lld", name,
             INVENTORY_MAX);
    return RESTOCK_EINVAL;
  }
  *out = json_integer_value(j);
  return 0;
}

static int copy_level(void *ctx, const LevelRow *row) {
  LevelOut *o = ctx;
  snprintf(o->variant_id, sizeof o->variant_id, "%s", row->variant_id);
  snprintf(o->location_id, sizeof o->location_id, "%s", row->location_id);
  o->stocked = row->stocked;
  o->reserved = row->reserved;
  snprintf(o->created_at, sizeof o->created_at, "%s", row->created_at);
  snprintf(o->updated_at, sizeof o->updated_at, "%s", row->updated_at);
  return 0;
}

/* Sets the level of (variant, location) from `obj`: stocked_quantity and
 * reserved_quantity, each optional (kept, or 0 for a new level). Keeps the
 * variant's inventory_quantity equal to the sum of its levels. */
static int level_update(StoreTx *tx, InventoryCall *c, json_t *obj, char *err,
                        size_t errlen) {
  json_t *jv = json_object_get(obj, "variant_id");
  json_t *jl = json_object_get(obj, "location_id");
  if (!json_is_string(jv) || !json_is_string(jl) ||
      !domain_valid_id(json_string_value(jv)) ||
      !domain_valid_id(json_string_value(jl))) {
    snprintf(err, errlen, "variant_id and location_id are required strings");
    return RESTOCK_EINVAL;
  }
  const char *variant_id = json_string_value(jv);
  const char *location_id = json_string_value(jl);
  long long stocked = 0, reserved = 0;
  bool has_stocked, has_reserved;
  int rc = quantity_field(obj, "stocked_quantity", &stocked, &has_stocked, err,
                          errlen);
  if (rc == 0)
    rc = quantity_field(obj, "reserved_quantity", &reserved, &has_reserved, err,
                        errlen);
  if (rc) return rc;
  Variant v;
  memset(&v, 0, sizeof v);
  rc = store_variant_get(tx, variant_id, &v);
  bool existed_levels = v.has_levels;
  long long before_total = v.inventory_quantity;
  variant_clear(&v);
  if (rc == RESTOCK_ENOTFOUND) {
    snprintf(err, errlen, "Variant with id: %.100s was not found", variant_id);
    return RESTOCK_EINVAL;
  }
  if (rc) return rc;
  bool exists = false;
  rc = store_location_exists(tx, location_id, &exists);
  if (rc) return rc;
  if (!exists && c->create_locations) {
    NamedRow row;
    memset(&row, 0, sizeof row);
    rc = store_location_put(tx, location_id, NULL, &row);
    named_row_clear(&row);
    if (rc) return rc;
  } else if (!exists) {
    snprintf(err, errlen, "Stock location with id: %.100s was not found",
             location_id);
    return RESTOCK_EINVAL;
  }
  long long old_stocked = 0, old_reserved = 0;
  rc =
      store_level_get(tx, variant_id, location_id, &old_stocked, &old_reserved);
  if (rc != 0 && rc != RESTOCK_ENOTFOUND) return rc;
  if (!has_stocked) stocked = old_stocked;
  if (!has_reserved) reserved = old_reserved;
  long long before = 0, total = 0;
  char now[ISOTIME_LEN];
  isotime_now(now);
  rc = store_level_put(tx, variant_id, location_id, stocked, reserved, now,
                       &before, copy_level, &c->level);
  if (rc == 0) rc = store_variant_sync_levels(tx, variant_id, now, &total);
  if (rc == RESTOCK_ERANGE) {
    snprintf(err, errlen,
             "stocked_quantity: the total quantity of variant %.100s over its "
             "levels would overflow",
             variant_id);
    return RESTOCK_EINVAL;
  }
  /* The first level makes a variant multi-warehouse: its quantity becomes
   * the sum of its levels, whatever inventory_quantity said before. */
  bool changed = total != before_total;
  bool rose =
      stocked - reserved > before || (!existed_levels && total > before_total);
  if (rc == 0)
    rc = after_quantity_change(tx, &c->unit, variant_id, changed, rose);
  return rc;
}

/* Sets inventory_quantity of a variant without levels. */
static int quantity_update(StoreTx *tx, InventoryCall *c, json_t *obj,
                           char *err, size_t errlen) {
  json_t *jv = json_object_get(obj, "variant_id");
  json_t *jq = json_object_get(obj, "inventory_quantity");
  if (!json_is_string(jv)) {
    snprintf(err, errlen, "variant_id is a required string");
    return RESTOCK_EINVAL;
  }
  if (!json_is_integer(jq) || json_integer_value(jq) > INVENTORY_MAX ||
      json_integer_value(jq) < -INVENTORY_MAX) {
    snprintf(err, errlen,
             "inventory_quantity must be an integer from -%lld to %lld",
             INVENTORY_MAX, INVENTORY_MAX);
    return RESTOCK_EINVAL;
  }
  Variant v;
  memset(&v, 0, sizeof v);
  int rc = store_variant_get(tx, json_string_value(jv), &v);
  if (rc == RESTOCK_ENOTFOUND) {
    snprintf(err, errlen, "Variant with id: %.100s was not found",
             json_string_value(jv));
    variant_clear(&v);
    return RESTOCK_EINVAL;
  }
  if (rc == 0 && v.has_levels) {
    snprintf(err, errlen,
             "variant %.100s has inventory levels: its inventory_quantity is "
             "their sum; update the levels instead",
             v.id);
    variant_clear(&v);
    return RESTOCK_EINVAL;
  }
  long long before = v.inventory_quantity, now = json_integer_value(jq);
  if (rc == 0 && before != now) {
    isotime_now(v.updated_at);
    rc = store_variant_set_quantity(tx, v.id, now, v.updated_at);
    if (rc == 0)
      rc = after_quantity_change(tx, &c->unit, v.id, true, now > before);
  }
  variant_clear(&v);
  return rc;
}

static int update_fn(StoreTx *tx, void *arg) {
  InventoryCall *c = arg;
  char err[400] = "";
  size_t n = json_array_size(c->updates);
  for (size_t i = 0; i < n; i++) {
    json_t *u = json_array_get(c->updates, i);
    int rc = 0;
    if (!json_is_object(u)) {
      snprintf(err, sizeof err, "an update must be a JSON object");
      rc = RESTOCK_EINVAL;
    }
    bool is_level = rc == 0 && json_object_get(u, "location_id") != NULL;
    const char *const *allowed = is_level ? level_fields : quantity_fields;
    const char *key;
    json_t *value;
    if (rc == 0) json_object_foreach(u, key, value) {
        size_t k = 0;
        while (allowed[k] && strcmp(allowed[k], key) != 0) k++;
        if (!allowed[k] && rc == 0) {
          snprintf(err, sizeof err, "unknown field '%.64s'", key);
          rc = RESTOCK_EINVAL;
        }
      }
    if (rc == 0)
      rc = is_level ? level_update(tx, c, u, err, sizeof err)
                    : quantity_update(tx, c, u, err, sizeof err);
    if (rc) {
      if (c->wrapped)
        snprintf(c->message, sizeof c->message, "updates[%zu]: %.380s", i, err);
      else
        snprintf(c->message, sizeof c->message, "%s", err);
      return rc;
    }
  }
  c->updated = (long long)n;
  return 0;
}

static void update_finish(Unit *u, int status) {
  InventoryCall *c = (InventoryCall *)u;
  c->done(c, status);
}

void inventory_update(Domain *d, InventoryCall *c) {
  c->message[0] = '\0';
  unit_write(d, &c->unit, update_fn, update_finish);
}

void inventory_call_clear(InventoryCall *c) {
  json_decref(c->updates);
  c->updates = NULL;
}

/* ---- locations, channels, keys ----------------------------------------------
 */

/* Checks that every id names an existing row. */
static int check_ids(StoreTx *tx, NamedCall *c, const char *field,
                     const char *what,
                     int (*exists)(StoreTx *, const char *, bool *)) {
  for (size_t i = 0; i < c->ids->n; i++) {
    bool found = false;
    int rc = exists(tx, c->ids->items[i], &found);
    if (rc) return rc;
    if (!found) {
      snprintf(c->message, sizeof c->message,
               "%s[%zu]: %s with id: %.200s was not found", field, i, what,
               c->ids->items[i]);
      return RESTOCK_EINVAL;
    }
  }
  return 0;
}

/* A channel newly linked to a location can raise the channel's quantity:
 * the variants stocked there with subscribers in the channel get a check. */
static int check_linked(StoreTx *tx, Unit *u, const char *channel,
                        const StrList *added) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < added->n; i++) {
    StrList variants = {0};
    rc = store_variants_to_check(tx, added->items[i], channel, &variants);
    for (size_t j = 0; rc == 0 && j < variants.n; j++)
      rc = engine_schedule_check(tx, u, variants.items[j]);
    strlist_clear(&variants);
  }
  return rc;
}

/* A deleted location takes its levels along: each variant that had one is
 * summed again, and checked if that raised it (a level with more reserved
 * than stocked held the sum down). */
static int after_location_delete(StoreTx *tx, Unit *u,
                                 const StrList *variants) {
  int rc = 0;
  char now[ISOTIME_LEN];
  isotime_now(now);
  for (size_t i = 0; rc == 0 && i < variants->n; i++) {
    Variant v;
    memset(&v, 0, sizeof v);
    rc = store_variant_get(tx, variants->items[i], &v);
    if (rc == RESTOCK_ENOTFOUND) {
      rc = 0;
      continue;
    }
    long long before = v.inventory_quantity, total = 0;
    variant_clear(&v);
    if (rc == 0)
      rc = store_variant_sync_levels(tx, variants->items[i], now, &total);
    if (rc == 0)
      rc = after_quantity_change(tx, u, variants->items[i], total != before,
                                 total > before);
  }
  return rc;
}

static int named_fn(StoreTx *tx, void *arg) {
  NamedCall *c = arg;
  char now[ISOTIME_LEN];
  isotime_now(now);
  int rc = 0;
  if (c->remove) {
    StrList variants = {0};
    long long moved = 0;
    switch (c->kind) {
      case NAMED_PUT_LOCATION:
        rc = store_location_delete(tx, c->id, &variants);
        if (rc == 0) rc = after_location_delete(tx, &c->unit, &variants);
        break;
      case NAMED_PUT_CHANNEL:
        rc = store_subscription_cancel(tx, NULL, c->id, now, &moved);
        if (rc == 0) rc = store_channel_delete(tx, c->id);
        break;
      case NAMED_PUT_KEY:
        rc = store_key_delete(tx, c->id);
        break;
    }
    strlist_clear(&variants);
    if (rc == RESTOCK_ENOTFOUND) {
      static const char *const what[] = {"Stock location", "Sales channel",
                                         "Publishable API key"};
      snprintf(c->message, sizeof c->message,
               "%s with id: %.200s was not found", what[c->kind], c->id);
    }
    return rc;
  }
  switch (c->kind) {
    case NAMED_PUT_LOCATION:
      return store_location_put(tx, c->id, c->name, &c->out);
    case NAMED_PUT_CHANNEL: {
      if (c->ids) {
        rc = check_ids(tx, c, "location_ids", "Stock location",
                       store_location_exists);
        if (rc) return rc;
      }
      StrList added = {0};
      rc = store_channel_put(tx, c->id, c->name, c->ids, &c->out, &added);
      if (rc == 0) rc = check_linked(tx, &c->unit, c->id, &added);
      strlist_clear(&added);
      return rc;
    }
    case NAMED_PUT_KEY:
      /* Without sales_channel_ids a key keeps its channels (a new one has
       * none), as a sales channel keeps its locations. */
      if (c->ids) {
        rc = check_ids(tx, c, "sales_channel_ids", "Sales channel",
                       store_channel_exists);
        if (rc) return rc;
      }
      return store_key_put(tx, c->id, c->ids, &c->out);
  }
  return RESTOCK_EINVAL;
}

static void named_finish(Unit *u, int status) {
  NamedCall *c = (NamedCall *)u;
  c->done(c, status);
}

void inventory_named(Domain *d, NamedCall *c) {
  c->message[0] = '\0';
  memset(&c->out, 0, sizeof c->out);
  unit_write(d, &c->unit, named_fn, named_finish);
}

void named_call_clear(NamedCall *c) {
  free(c->id);
  free(c->name);
  if (c->ids) {
    strlist_clear(c->ids);
    free(c->ids);
  }
  named_row_clear(&c->out);
  c->id = c->name = NULL;
  c->ids = NULL;
}

/* ---- deleting a variant -----------------------------------------------------
 */

static int variant_delete_fn(StoreTx *tx, void *arg) {
  VariantDeleteCall *c = arg;
  char now[ISOTIME_LEN];
  isotime_now(now);
  int rc = store_subscription_cancel(tx, c->id, NULL, now, &c->cancelled);
  return rc ? rc : store_variant_delete(tx, c->id);
}

static void variant_delete_finish(Unit *u, int status) {
  VariantDeleteCall *c = (VariantDeleteCall *)u;
  c->done(c, status);
}

void inventory_variant_delete(Domain *d, VariantDeleteCall *c) {
  c->cancelled = 0;
  unit_write(d, &c->unit, variant_delete_fn, variant_delete_finish);
}
