/* SQLite storage: the connection, transactions, and every SQL statement the
 * server runs, prepared once with bound parameters. Nothing here builds SQL
 * text from input. */
#ifndef RESTOCKD_STORE_H
#define RESTOCKD_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <uv.h>

typedef struct Store Store;

enum {
  STORE_OK = 0,
  STORE_NOT_FOUND = -1,
  STORE_ERROR = -2, /* logged where it happened */
};

/* Opens (creating if needed) the database at `path` in WAL mode. Returns 0,
 * or -1 with a message in *err (free it) and *out untouched. */
int store_open(const char *path, Store **out, char **err);
/* Opens a read-only connection to the same database, for listings run on
 * the thread pool (store_event_list, store_subscription_list). One thread
 * at a time may use it. Returns 0, or -1 with a message in *err (free it). */
int store_open_reader(const char *path, Store **out, char **err);
/* The path the store was opened with. */
const char *store_path(const Store *s);
/* Finalizes every statement and closes the connection. NULL is a no-op. */
void store_close(Store *s);
/* Moves WAL checkpoints off the event loop: SQLite would otherwise run them
 * (two fsyncs and a copy of the WAL) inside the commit that crosses 1000
 * pages. From now on a commit that leaves the WAL past that size queues a
 * passive checkpoint on libuv's thread pool, through a connection of its
 * own. The loop must run until it finishes before store_close. */
void store_checkpoint_in_background(Store *s, uv_loop_t *loop);
sqlite3 *store_db(Store *s);

/* Write transactions. store_begin takes the write lock at once (BEGIN
 * IMMEDIATE). Each returns 0 or STORE_ERROR; store_rollback never fails.
 *
 * With group commit on, store_begin opens a savepoint inside the transaction
 * of the current loop iteration (opening it, and calling `on_open`, when
 * none is open), store_commit releases the savepoint and store_rollback
 * rolls back to it: each caller's writes stay all or nothing, and one
 * fsync-free WAL commit per iteration (store_group_commit) makes them all
 * durable. A caller must not report its writes as done before then. */
int store_begin(Store *s);
int store_commit(Store *s);
void store_rollback(Store *s);
/* Called after each successful store_commit and each store_rollback (to
 * count what a transaction did only once it is kept). */
void store_set_hooks(Store *s, void (*on_commit)(void),
                     void (*on_rollback)(void));
/* Turns group commit on; `on_open(arg)` is called when a group opens. */
void store_group_enable(Store *s, void (*on_open)(void *), void *arg);
/* Commits the open group, if any. Returns 0, or STORE_ERROR when it was
 * rolled back (every write of the group is lost). */
int store_group_commit(Store *s);

typedef struct {
  char *id;
  char *product_id; /* NULL for JSON null */
  char *sku;
  char *title;
  long long inventory_quantity;
  bool allow_backorder;
  bool manage_inventory;
  bool has_levels; /* multi-warehouse: inventory_quantity is their sum */
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

/* Sets only inventory_quantity and updated_at of variant `id`. */
int store_variant_set_quantity(Store *s, const char *id, long long quantity,
                               const char *updated_at);

/* Adds an active subscription unless the same (variant, channel, email) is
 * already subscribed. `channel` NULL means unscoped. Writes the stored row's
 * created_at into `created_at` and sets *inserted_id to the new row's id, or
 * 0 when it was there already. A new row is linked to the id the next event
 * will most likely get (one past the largest), returned in *event_id: a
 * caller whose event gets another id calls store_subscription_set_event.
 * That saves an UPDATE per subscription. Returns 0 or STORE_ERROR. */
int store_subscription_add(Store *s, const char *variant_id,
                           const char *channel, const char *email,
                           char created_at[32], long long *inserted_id,
                           long long *event_id);
/* Remembers the restock-notification.subscribed event of subscription `id`
 * (to forget it with the email). */
int store_subscription_set_event(Store *s, long long id, long long event_id);

typedef struct {
  const char *variant_id;       /* NULL: any */
  const char *email;            /* NULL: any */
  const char *sales_channel_id; /* NULL: any */
  bool notified;                /* history instead of active */
  long long limit;
  long long offset;
} SubscriptionFilter;

/* The number of active subscriptions, in *count. */
int store_subscription_count(Store *s, long long *count);
/* Lists subscriptions matching `f`, oldest first, as a new JSON array in
 * *rows, and the number of all matching rows in *count. Returns 0 or
 * STORE_ERROR. */
int store_subscription_list(Store *s, const SubscriptionFilter *f,
                            json_t **rows, long long *count);
/* Erases the active subscriptions and the history of `email` (of one
 * variant, if `variant_id` is not NULL), and the email from the outbox: its
 * restock-notification.subscribed events are deleted and it is taken out of
 * the emails of the restocked events it was notified in. Forgetting the
 * whole email (`variant_id` NULL) also scrubs it from the data of events a
 * plugin emitted (restock.emit): a string equal to it becomes null in an
 * object and leaves an array. Sets *deleted to
 * the subscription and history rows removed, *scrubbed to the events
 * changed or deleted. Returns 0 or STORE_ERROR. */
int store_subscription_erase(Store *s, const char *email,
                             const char *variant_id, long long *deleted,
                             long long *scrubbed);

/* True in *any when `variant_id` has an active subscription. */
int store_subscription_any(Store *s, const char *variant_id, bool *any);
/* The scopes of a variant's active subscriptions: a new JSON array of
 * channel ids, "" standing for unscoped. */
int store_subscription_scopes(Store *s, const char *variant_id,
                              json_t **channels);
/* Moves up to `limit` of the oldest active subscriptions of the scope
 * (`channel` "" for unscoped) into the history, notified at `now`. Sets
 * *emails to a new JSON array of their emails (oldest first), *more to
 * whether any remain. Returns 0 or STORE_ERROR. */
int store_subscription_take(Store *s, const char *variant_id,
                            const char *channel, long long limit,
                            const char *now, json_t **emails, bool *more);
/* Removes one active subscription; *removed says whether there was one. */
int store_subscription_remove(Store *s, const char *variant_id,
                              const char *channel, const char *email,
                              bool *removed);

/* ---- scheduled restock checks (times in ms since the epoch) ---------- */

/* Schedules a check of `variant_id` at `due_at`. Unless `replace`, a check
 * already scheduled is kept as it is. */
int store_check_schedule(Store *s, const char *variant_id, long long due_at,
                         bool replace);
/* The earliest due time in *due_at, and *any false when none is scheduled. */
int store_check_next(Store *s, long long *due_at, bool *any);
/* A new JSON array of up to `max` variant ids whose check is due at `now`. */
int store_check_due(Store *s, long long now, long long max, json_t **ids);
int store_check_delete(Store *s, const char *variant_id);
/* Number of checks scheduled. */
int store_check_count(Store *s, long long *count);

/* ---- the outbox --------------------------------------------------------- */

/* Inserts an event with its data (JSON text); *id gets its id. */
int store_event_insert(Store *s, const char *name, const char *data,
                       const char *status, long long *id);
int store_delivery_insert(Store *s, long long event_id, const char *handler,
                          long long max_attempts, long long next_at);

typedef struct {
  long long event_id;
  char *handler;
  long long attempts;
  long long max_attempts;
  char *event; /* the event's name */
  char *data;  /* its data, JSON text */
} DueDelivery;

void due_delivery_clear(DueDelivery *d);
/* Up to `max` pending deliveries due at `now`, oldest due first, into a new
 * array *out of *n entries (free each with due_delivery_clear, then the
 * array). */
int store_delivery_due(Store *s, long long now, long long max,
                       DueDelivery **out, size_t *n);
/* Sets a pending delivery's next_at (a lease while it runs, or a retry). */
int store_delivery_lease(Store *s, long long event_id, const char *handler,
                         long long next_at);
/* Records a delivery's outcome. `error` may be NULL. */
int store_delivery_update(Store *s, long long event_id, const char *handler,
                          const char *status, long long attempts,
                          long long next_at, const char *error);
/* Recomputes an event's status and attempts from its deliveries; a non-NULL
 * `error` becomes its last_error. */
int store_event_refresh(Store *s, long long event_id, const char *error);
/* The earliest next_at of a pending delivery, *any false if there is none. */
int store_delivery_next(Store *s, long long *next_at, bool *any);
/* Lists events (each with its deliveries) matching `name` and `status`
 * (NULL: any), oldest first. */
int store_event_list(Store *s, const char *name, const char *status,
                     long long limit, long long offset, json_t **rows,
                     long long *count);
/* Requeues the dead deliveries of event `id`, due at `now`. Returns 0 with
 * *requeued, STORE_NOT_FOUND for no such event, or STORE_ERROR. */
int store_event_retry(Store *s, long long id, long long now,
                      long long *requeued);
/* Retention: walks events after `after_id`, oldest first, at most `max`
 * (at most 512) of them, deleting (with their deliveries) the delivered ones
 * created before `cutoff` (same format as isotime_now). Stops at the first
 * event created at or after `cutoff`, setting *reached. *last_id gets the
 * last event walked past, from which the next call goes on. */
int store_event_prune(Store *s, long long after_id, const char *cutoff,
                      long long max, long long *last_id, long long *deleted,
                      bool *reached);
/* Pending deliveries, in *count. */
int store_delivery_pending_count(Store *s, long long *count);

/* ---- multi-warehouse ----------------------------------------------------- */

/* Upserts a stock location; *out gets it as JSON. `name` NULL keeps the
 * stored name (or null for a new one). */
int store_location_put(Store *s, const char *id, const char *name,
                       json_t **out);
int store_location_exists(Store *s, const char *id, bool *exists);
/* Upserts a sales channel. `location_ids` (array of ids, all existing), if
 * not NULL, replaces its locations exactly; *added gets a new array of the
 * locations that were not linked before. *out gets the channel as JSON. */
int store_channel_put(Store *s, const char *id, const char *name,
                      json_t *location_ids, json_t **out, json_t **added);
int store_channel_exists(Store *s, const char *id, bool *exists);
/* sum(stocked - reserved) of the variant's levels at the channel's
 * locations. */
int store_channel_quantity(Store *s, const char *variant_id,
                           const char *channel, long long *quantity);
/* Upserts an inventory level. *before gets its former available quantity
 * (stocked - reserved; 0 for a new level); *out the level as JSON. */
int store_level_put(Store *s, const char *variant_id, const char *location_id,
                    long long stocked, long long reserved, long long *before,
                    json_t **out);
/* Reads a level's stocked and reserved quantities; STORE_NOT_FOUND if none. */
int store_level_get(Store *s, const char *variant_id, const char *location_id,
                    long long *stocked, long long *reserved);
/* Sets the variant's inventory_quantity to the sum over its levels; *sum
 * gets it. */
int store_variant_sync_levels(Store *s, const char *variant_id, long long *sum);
/* Upserts a publishable API key with exactly `channel_ids` (existing
 * channels; NULL keeps the stored ones); *out gets it as JSON. */
int store_key_put(Store *s, const char *id, json_t *channel_ids, json_t **out);
/* The channels of key `id` as a new JSON array, or STORE_NOT_FOUND. */
int store_key_channels(Store *s, const char *id, json_t **channels);
/* Variants with a level at `location` and a subscription in `channel`. */
int store_variants_to_check(Store *s, const char *location, const char *channel,
                            json_t **variant_ids);

/* Reads a meta value into a new string (*out), or STORE_NOT_FOUND. */
int store_meta_get(Store *s, const char *key, char **out);
int store_meta_put(Store *s, const char *key, const char *value);

#endif
