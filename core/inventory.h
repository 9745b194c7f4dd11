/* The inventory use-cases: variants, inventory quantities and levels, stock
 * locations, sales channels and publishable API keys. Each operation is one
 * unit of work (domain.h) and the only place that knows what follows its
 * write: a variant update writes product-variant.updated with the fields
 * that changed, and any change that can raise a quantity schedules a
 * restock check. The admin routes and the Lua API (restock.variants.upsert,
 * restock.inventory.*) call the same operations, so they validate and
 * behave the same.
 *
 * Inputs that come as JSON (a variant object, an inventory update) are
 * validated here: the status is RESTOCK_EINVAL with `message` naming the
 * field, prefixed with `variants[N]: ` or `updates[N]: ` when the call
 * carried a list. */
#ifndef RESTOCKD_INVENTORY_H
#define RESTOCKD_INVENTORY_H

#include <jansson.h>
#include <stdbool.h>

#include "domain.h"

/* The largest quantity accepted anywhere (stocked, reserved, a variant's
 * inventory_quantity, either sign): far beyond any stock, and small enough
 * that sums over many levels cannot overflow. */
#define INVENTORY_MAX 1000000000000000LL

typedef struct UpsertCall UpsertCall;
struct UpsertCall {
  Unit unit;
  /* In: variant objects (the fields of POST /admin/variants). */
  json_t *variants; /* an array; owned by the call */
  bool wrapped;     /* errors name variants[N] */
  char *id;         /* the path's id (one variant), or NULL */
  char *product_id; /* Medusa's path: the variant must be of it */
  void (*done)(UpsertCall *c, int status);
  /* Out: the variants as stored, in order. */
  Variant *out;
  size_t nout;
  char message[512];
};
void inventory_upsert(Domain *d, UpsertCall *c);
void upsert_call_clear(UpsertCall *c);

/* A level as stored. */
typedef struct {
  char variant_id[256];
  char location_id[256];
  long long stocked, reserved;
  char created_at[ISOTIME_LEN], updated_at[ISOTIME_LEN];
} LevelOut;

typedef struct InventoryCall InventoryCall;
struct InventoryCall {
  Unit unit;
  /* In: updates, each {variant_id, inventory_quantity} or {variant_id,
   * location_id, stocked_quantity, reserved_quantity}. */
  json_t *updates;       /* an array; owned by the call */
  bool wrapped;          /* errors name updates[N] */
  bool create_locations; /* an unknown location is created (Lua) */
  void (*done)(InventoryCall *c, int status);
  /* Out. */
  long long updated;
  LevelOut level; /* the last level written */
  char message[512];
};
void inventory_update(Domain *d, InventoryCall *c);
void inventory_call_clear(InventoryCall *c);

typedef enum {
  NAMED_PUT_LOCATION,
  NAMED_PUT_CHANNEL,
  NAMED_PUT_KEY,
} NamedPutKind;

typedef struct NamedCall NamedCall;
struct NamedCall {
  Unit unit;
  NamedPutKind kind;
  char *id;
  char *name;   /* NULL keeps the stored one */
  StrList *ids; /* a channel's location_ids, a key's sales_channel_ids;
                   NULL keeps the stored ones */
  bool remove;  /* delete instead of upsert */
  void (*done)(NamedCall *c, int status);
  NamedRow out;
  char message[512];
};
/* Upserts (or with `remove`, deletes) a stock location, a sales channel or
 * a publishable key. A location newly linked to a channel, and a location
 * deleted with levels, schedule the checks they call for; a deleted
 * channel's subscriptions move to the history as cancelled. */
void inventory_named(Domain *d, NamedCall *c);
void named_call_clear(NamedCall *c);

typedef struct VariantDeleteCall VariantDeleteCall;
struct VariantDeleteCall {
  Unit unit;
  char id[256];
  void (*done)(VariantDeleteCall *c, int status);
  long long cancelled; /* subscriptions moved to the history */
};
/* Deletes a variant; its subscriptions move to the history as cancelled. */
void inventory_variant_delete(Domain *d, VariantDeleteCall *c);

#endif
