/* SQLite storage: the connection, transactions, and every SQL statement the
 * server runs, prepared once with bound parameters. Nothing here builds SQL
 * text from input. */
#ifndef RESTOCKD_STORE_H
#define RESTOCKD_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>

typedef struct Store Store;

enum {
  STORE_OK = 0,
  STORE_NOT_FOUND = -1,
  STORE_ERROR = -2, /* logged where it happened */
};

/* Opens (creating if needed) the database at `path` in WAL mode. Returns 0,
 * or -1 with a message in *err (free it) and *out untouched. */
int store_open(const char *path, Store **out, char **err);
/* Finalizes every statement and closes the connection. NULL is a no-op. */
void store_close(Store *s);
sqlite3 *store_db(Store *s);

/* Write transactions. store_begin takes the write lock at once (BEGIN
 * IMMEDIATE). Each returns 0 or STORE_ERROR; store_rollback never fails. */
int store_begin(Store *s);
int store_commit(Store *s);
void store_rollback(Store *s);

/* The current UTC time as "YYYY-MM-DDTHH:MM:SS.mmmZ". */
void store_now(char out[32]);

typedef struct {
  char *id;
  char *product_id; /* NULL for JSON null */
  char *sku;
  char *title;
  long long inventory_quantity;
  bool allow_backorder;
  bool manage_inventory;
  char created_at[32];
  char updated_at[32];
} Variant;

/* Frees the strings of `v` (not `v` itself) and zeroes it. */
void variant_clear(Variant *v);
/* Deep copy. */
void variant_copy(Variant *dst, const Variant *src);

/* Loads variant `id` into *out (which the caller clears). Returns 0,
 * STORE_NOT_FOUND or STORE_ERROR. */
int store_variant_get(Store *s, const char *id, Variant *out);
/* Inserts or replaces the whole row of `v`. Returns 0 or STORE_ERROR. */
int store_variant_put(Store *s, const Variant *v);

/* Adds an active subscription unless the same (variant, channel, email) is
 * already subscribed. `channel` NULL means unscoped. Writes the stored row's
 * created_at into `created_at` and sets *inserted. Returns 0 or
 * STORE_ERROR. */
int store_subscription_add(Store *s, const char *variant_id,
                           const char *channel, const char *email,
                           char created_at[32], bool *inserted);

typedef struct {
  const char *variant_id;       /* NULL: any */
  const char *email;            /* NULL: any */
  const char *sales_channel_id; /* NULL: any */
  bool notified;                /* history instead of active */
  long long limit;
  long long offset;
} SubscriptionFilter;

/* Lists subscriptions matching `f`, oldest first, as a new JSON array in
 * *rows, and the number of all matching rows in *count. Returns 0 or
 * STORE_ERROR. */
int store_subscription_list(Store *s, const SubscriptionFilter *f,
                            json_t **rows, long long *count);
/* Erases the active subscriptions and the history of `email` (of one
 * variant, if `variant_id` is not NULL). Sets *deleted to the rows removed.
 * Returns 0 or STORE_ERROR. */
int store_subscription_erase(Store *s, const char *email,
                             const char *variant_id, long long *deleted);

/* Reads a meta value into a new string (*out), or STORE_NOT_FOUND. */
int store_meta_get(Store *s, const char *key, char **out);
int store_meta_put(Store *s, const char *key, const char *value);

#endif
