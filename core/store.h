/* The storage contract: backend-neutral and asynchronous.
 *
 * Work reaches the database as units: a function that runs on the storage
 * side, given a transaction handle (StoreTx), and a completion that runs on
 * the event loop once the unit's transaction has committed, or failed. A
 * unit never runs on the loop thread, and its completion is never called
 * from inside the call that submitted it (libuv's rule).
 *
 * Write units share transactions: the writer takes every unit waiting in its
 * queue, runs each in a savepoint of one transaction (a unit that fails
 * undoes only itself), commits once, and only then posts their completions.
 * A completion therefore never reports a write that is not durable, and a
 * unit that read rows of another unit of its group learns of them only if
 * they were committed with it. If the commit fails, every unit of the group
 * completes with RESTOCK_ECOMMIT. Read units run on reader connections (or
 * on the writer when the backend has none), each in a read transaction of
 * its own: they see committed rows only.
 *
 * The operations below are synchronous and may be called only from inside a
 * unit's function, on the StoreTx it was given. They take and return plain
 * structs; no SQL, no backend type and no API JSON crosses this header.
 * Strings in a row handed to a callback are borrowed until it returns.
 *
 * Every function returns 0 (or a count) on success or a negative RESTOCK_E*
 * code (error.h); a database failure is RESTOCK_ESTORE, already logged. */
#ifndef RESTOCKD_STORE_H
#define RESTOCKD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "error.h"
#include "isotime.h"
#include "strlist.h"

typedef struct Store Store;
typedef struct StoreTx StoreTx;

/* Runs on the storage side. Returns 0 to keep the unit's writes, or a
 * negative code to undo them (the code is passed to the completion). */
typedef int (*StoreFn)(StoreTx *tx, void *arg);
/* Runs on the loop with the unit's final status: what fn returned, or
 * RESTOCK_ECOMMIT when the group's commit failed, or RESTOCK_EUNAVAIL when
 * the store was stopping. */
typedef void (*StoreDone)(void *arg, int status);
/* Issue 14: runs the work of `n` write units at once (their args), setting
 * statuses[i] as the unit's own StoreFn would have returned. Returns 0, or a
 * negative code having changed none of the units' outputs: the store then
 * undoes what it did and runs each unit's StoreFn instead. */
typedef int (*StoreBatchFn)(StoreTx *tx, void *const *args, int *statuses,
                            size_t n);

/* Puts a write unit's outputs back as they were when it was queued (its
 * StoreFn is about to run again). */
typedef void (*StoreReset)(void *arg);

/* A unit of work. The caller owns the memory (usually embedded in its own
 * context) and must keep it until `done` has run. */
typedef struct StoreWork {
  struct StoreWork *next; /* private */
  StoreFn fn;
  StoreDone done;
  void *arg;
  /* Optional, set before the unit is queued: makes a write unit
   * replayable. Its fn must then change nothing but the database and what
   * `reset` puts back. A group whose units are replayable runs them
   * without a savepoint each; when one of them fails having written, the
   * writer rolls the group back and runs the units before it again, each
   * after its reset (run_group). NULL: the unit runs in a savepoint. */
  StoreReset reset;
  int status; /* private until done runs */
  uint64_t queued_ns;
  StoreBatchFn batch; /* private: store_write_batched's */
  bool sync;          /* private: store_write_sync's */
  bool sync_done;     /* private */
} StoreWork;

typedef enum {
  STORE_ROLE_SERVER, /* `start`: writer, readers, the single-process lock */
  STORE_ROLE_CLI,    /* migrations and the like: one connection, no lock */
} StoreRole;

typedef struct {
  StoreRole role;
  int readers;           /* reader connections; 0 runs reads on the writer */
  Durability durability; /* may change later with store_set_durability */
  const char *node_id;   /* names this process's leases; copied */
} StoreOptions;

/* Opens the database named by `uri`: a postgresql:// or postgres:// URI
 * (libpq's syntax) selects PostgreSQL, any other name is a SQLite file
 * path (":memory:" keeps it in memory, readers then run on the writer).
 * With STORE_ROLE_SERVER a SQLite file is locked for this process: a second
 * server on it gets RESTOCK_EBUSY with the holder's PID in *err; any number
 * of servers may share a PostgreSQL database. Returns 0, or a negative code
 * with a message in *err (free it). */
int store_open(const char *uri, const StoreOptions *o, Store **out, char **err);
/* The backend's name ("sqlite", "postgres"). */
const char *store_backend(const Store *s);
/* True when other servers may share the database (PostgreSQL): the server
 * then runs its node machinery (heartbeat, registry, polling). */
bool store_shared(const Store *s);
/* False while the database is unreachable: the last transaction was lost
 * with its connection (any thread). */
bool store_healthy(const Store *s);
/* Before store_start: `fn(arg)` runs on the loop whenever another server
 * made deliveries due (PostgreSQL's LISTEN/NOTIFY); never on SQLite. */
void store_set_wake(Store *s, void (*fn)(void *arg), void *arg);
/* `uri` as logs may show it, its password masked (malloc'd). */
char *store_display_uri(const char *uri);
/* Runs `fn` now, on the calling thread, in a transaction of its own:
 * committed when it returns 0, rolled back otherwise. Only before
 * store_start (start-up, the CLI). Returns fn's status, or RESTOCK_ECOMMIT. */
int store_run(Store *s, StoreFn fn, void *arg);
/* Like store_run, but without a transaction around fn (for the migrations,
 * which manage their own). */
int store_run_bare(Store *s, StoreFn fn, void *arg);
/* Prepares every statement of the backend on `tx` (the unit tests check
 * that each one compiles against the migrated schema). Returns 0, or
 * RESTOCK_ESTORE naming the first that does not in `failed`. */
int store_prepare_all(StoreTx *tx, char *failed, size_t len);
/* Starts the storage threads; completions will run on `loop`. Returns 0 or
 * RESTOCK_ESTORE (with a message in *err). */
int store_start(Store *s, uv_loop_t *loop, char **err);
/* Queues a write unit (loop thread only). */
void store_write(Store *s, StoreWork *w, StoreFn fn, StoreDone done, void *arg);
/* Issue 14: queues a write unit that the writer may run together with the
 * neighbours of its group queued with the same `batch`, in one call of it
 * (a backend with round trips to save: PostgreSQL runs 64 subscribes in one
 * statement); else, and whenever the batch fails, it runs `fn`. Loop thread
 * only. */
void store_write_batched(Store *s, StoreWork *w, StoreFn fn, StoreBatchFn batch,
                         StoreDone done, void *arg);
/* Queues a read unit (loop thread only). */
void store_read(Store *s, StoreWork *w, StoreFn fn, StoreDone done, void *arg);
/* From a thread other than the loop's (the watchdog): runs `fn` as a write
 * unit and waits, at most `timeout_ms`, for its group to commit. Returns
 * fn's status, RESTOCK_ECOMMIT, RESTOCK_EUNAVAIL (not started, or
 * stopping) or RESTOCK_ETIMEDOUT. `arg` must outlive a timeout: the unit
 * may still run after this returns. */
int store_write_sync(Store *s, StoreFn fn, void *arg, uint64_t timeout_ms);
/* Units queued or running whose completion has not run yet. */
size_t store_inflight(const Store *s);
/* From the next group on, commits with durability `d`. */
void store_set_durability(Store *s, Durability d);
/* Stops the threads once their queues are empty, then runs the last
 * completions and closes the loop handle; the loop must run afterwards for
 * the close to finish. Units queued after this complete with
 * RESTOCK_EUNAVAIL. Loop thread only. */
void store_stop(Store *s);
/* Frees everything (after store_stop and the loop has run, or when the
 * store was never started). NULL is a no-op. */
void store_close(Store *s);

/* Nested savepoints inside a unit, for one part of it that may fail alone
 * (one restock check among several). Each begin needs one commit or one
 * rollback. */
int store_tx_begin(StoreTx *tx);
int store_tx_commit(StoreTx *tx);
void store_tx_rollback(StoreTx *tx);
/* The node id of this store's leases. */
const char *store_tx_node(const StoreTx *tx);

/* Counters of the storage side, for the bench and /metrics. */
typedef struct {
  unsigned long long groups; /* transactions the writer committed */
  unsigned long long units;  /* write units they held */
  unsigned long long failed_commits;
  unsigned long long wal_max_bytes; /* SQLite: the WAL's largest size */
  unsigned long long round_trips;   /* to a database server, all connections */
} StoreStats;
void store_stats(Store *s, StoreStats *out);

/* ---- the migrations (run with store_run_bare) --------------------------- */

typedef struct {
  const char *name; /* "001_initial" */
  const char *sql;
} Migration;

/* The backend's migrations, in order. */
const Migration *store_migrations(const StoreTx *tx, size_t *count);
/* Creates schema_migrations if needed and reads when each migration was
 * applied (applied_at[i][0] is '\0' for a pending one). */
int store_migrations_applied(StoreTx *tx, char (*applied_at)[ISOTIME_LEN],
                             char **err);
/* Applies one migration and records it, in one transaction. */
int store_migration_apply(StoreTx *tx, const Migration *m, char **err);
/* Takes the lock several nodes migrating at once share (PostgreSQL); a
 * no-op for SQLite. */
int store_migrations_lock(StoreTx *tx, bool lock, char **err);

/* ---- variants ------------------------------------------------------------ */

typedef struct {
  char *id;
  char *product_id; /* NULL for JSON null */
  char *sku;
  char *title;
  long long inventory_quantity;
  bool allow_backorder;
  bool manage_inventory;
  bool has_levels; /* multi-warehouse: inventory_quantity is their sum */
  char created_at[ISOTIME_LEN];
  char updated_at[ISOTIME_LEN];
} Variant;

/* Frees the strings of `v` (not `v` itself) and zeroes it. */
void variant_clear(Variant *v);
void variant_copy(Variant *dst, const Variant *src);

/* Loads variant `id` into *out (which the caller clears). 0 or
 * RESTOCK_ENOTFOUND. */
int store_variant_get(StoreTx *tx, const char *id, Variant *out);
/* The same, never locking the row, even in a write on a shared database:
 * for a restock's chunks, which several nodes take at once. */
int store_variant_peek(StoreTx *tx, const char *id, Variant *out);
/* Inserts or replaces the whole row of `v`. */
int store_variant_put(StoreTx *tx, const Variant *v);
/* Sets only inventory_quantity and updated_at. */
int store_variant_set_quantity(StoreTx *tx, const char *id, long long quantity,
                               const char *updated_at);
/* Deletes variant `id` with its levels and scheduled check. 0 or
 * RESTOCK_ENOTFOUND. */
int store_variant_delete(StoreTx *tx, const char *id);

typedef struct {
  const char *q; /* prefix of id, sku or title; NULL: any */
  int sold_out;  /* -1 any, 0 in stock only, 1 sold out only */
  long long limit, offset;
} VariantFilter;

/* One variant of a listing, with its quantity and active subscriptions. */
typedef int (*VariantRowFn)(void *ctx, const Variant *v, long long waiting);
int store_variant_list(StoreTx *tx, const VariantFilter *f, VariantRowFn fn,
                       void *ctx, long long *count);

/* ---- subscriptions --------------------------------------------------------
 */

typedef enum {
  SUB_ACTIVE = 0,
  SUB_NOTIFIED,  /* history */
  SUB_CANCELLED, /* history: its variant or channel was deleted */
  SUB_EXPIRED,   /* history: subscription_ttl passed */
  SUB_PENDING,   /* waiting for its confirmation (double opt-in) */
} SubscriptionStatus;

/* The status's name as the API shows it. */
const char *subscription_status_name(SubscriptionStatus s);

typedef struct {
  long long id;
  const char *variant_id;
  const char *sales_channel_id; /* NULL when unscoped */
  const char *email;
  const char *created_at;
  const char *notified_at; /* history only (when it ended), else NULL */
  SubscriptionStatus status;
  long long quantity; /* units wanted; 0 when not given */
  const char *locale; /* NULL when not given */
} SubscriptionRow;

/* The next id a new subscription (or event) will get, for a caller that
 * must name the row before it writes it (an unsubscribe token bound to it).
 * Call once per new row, and insert it in the same unit. */
int store_subscription_next_id(StoreTx *tx, long long *id);
int store_event_next_id(StoreTx *tx, long long *id);

/* Issue 14: reserves `n` subscription ids, in order, for the rows a batch
 * writes (store_subscribe_many). */
int store_ids_reserve(StoreTx *tx, size_t n, long long *subscription_ids);

typedef struct {
  long long id; /* from store_ids_reserve; its event's comes with the row */
  const char *variant_id;
  const char *email;
  const char *now;
  const char *data;     /* the subscribed event's data (JSON text) */
  const char *handlers; /* its deliveries: JSON [[handler, max_attempts]] */
} SubscribeRow;

typedef enum {
  SUBSCRIBE_ADDED = 0,
  SUBSCRIBE_NO_VARIANT = 1,
  SUBSCRIBE_IN_STOCK = 2,
  SUBSCRIBE_EXISTS = 3,
  SUBSCRIBE_PENDING = 4, /* the email's subscription waits for a confirm */
} SubscribeVerdict;

typedef struct {
  SubscribeVerdict verdict;
  char created_at[ISOTIME_LEN]; /* ADDED, EXISTS */
} SubscribeResult;

/* Unscoped subscribes, each as the subscribe use-case does it, all in one
 * statement where the backend has one (PostgreSQL): a row whose variant is
 * missing or in stock is judged and written nowhere; the others are added
 * unless the email is subscribed already, each new one with its
 * restock-notification.subscribed event (id, data) and one delivery per
 * handler due at `next_at`. out[i] is row i's verdict. */
int store_subscribe_many(StoreTx *tx, const SubscribeRow *rows, size_t n,
                         long long next_at, SubscribeResult *out);

/* A subscription to store (store_subscription_put). */
typedef struct {
  long long id; /* from store_subscription_next_id */
  const char *variant_id;
  const char *channel; /* NULL: unscoped */
  const char *email;
  const char *now;
  long long now_ms;
  long long quantity;            /* 0: none */
  const char *locale;            /* NULL: none */
  bool pending;                  /* a new one waits for its confirmation */
  long long subscribed_event_id; /* for a new active one, or 0 */
} NewSubscription;

typedef struct {
  long long id; /* the stored row's */
  bool created; /* false: it was there already (its wish updated) */
  bool pending; /* the stored row is pending */
  long long confirm_sent_at; /* a pending row's last confirmation (ms) */
  char created_at[ISOTIME_LEN];
} StoredSubscription;

/* Stores a subscription unless (variant, channel, email) is already
 * subscribed, active or pending; an existing one gets the new quantity and
 * locale when they are given. A new one is active, or pending with
 * `pending`. */
int store_subscription_put(StoreTx *tx, const NewSubscription *in,
                           StoredSubscription *out);
/* Notes that a pending subscription's confirmation was asked again. */
int store_pending_sent(StoreTx *tx, long long id, long long now_ms);

/* A pending subscription, as confirming it finds it. */
typedef struct {
  char variant_id[256];
  char sales_channel_id[256]; /* "" when unscoped */
  char email[256];
  char locale[64];    /* "" when none */
  long long quantity; /* 0 when none */
  bool was_active;    /* it was confirmed already */
} ConfirmedSubscription;
/* Makes pending subscription `id` active (same id). *out says what it
 * was; RESTOCK_ENOTFOUND when neither pending nor active. */
int store_pending_confirm(StoreTx *tx, long long id, const char *now,
                          long long subscribed_event_id,
                          ConfirmedSubscription *out);
/* Drops up to `max` pending subscriptions created before `cutoff`, oldest
 * first; *reached when none older is left. */
int store_pending_purge(StoreTx *tx, const char *cutoff, long long max,
                        long long *deleted, bool *reached);
/* Moves up to `max` active subscriptions created before `cutoff` to the
 * history as expired, oldest first; *reached when none older is left. */
int store_subscription_expire(StoreTx *tx, const char *cutoff, const char *now,
                              long long max, long long *moved, bool *reached);
/* True in *any when `email` has a subscription, pending one or history
 * row (a manage token of a forgotten email names nothing). */
int store_email_known(StoreTx *tx, const char *email, bool *any);

/* Links subscription `id` to its subscribed event, when the event's id
 * could not be known before (store_event_next_id gave RESTOCK_ERANGE). */
int store_subscription_set_event(StoreTx *tx, long long id, long long event_id);
/* Removes subscription `id`, active or pending; *removed says whether it
 * was there. */
int store_subscription_remove(StoreTx *tx, long long id, bool *removed);

typedef struct {
  const char *variant_id;       /* NULL: any */
  const char *email;            /* NULL: any */
  const char *sales_channel_id; /* NULL: any */
  SubscriptionStatus status;
  long long limit;
  long long offset;
} SubscriptionFilter;

typedef int (*SubscriptionRowFn)(void *ctx, const SubscriptionRow *row);
/* Lists the subscriptions matching `f`, oldest first, to `fn`; *count gets
 * the number of all matching rows. */
int store_subscription_list(StoreTx *tx, const SubscriptionFilter *f,
                            SubscriptionRowFn fn, void *ctx, long long *count);
/* The number of active subscriptions. */
int store_subscription_count(StoreTx *tx, long long *count);
/* True in *any when `variant_id` has an active subscription. */
int store_subscription_any(StoreTx *tx, const char *variant_id, bool *any);
/* The scopes of a variant's active subscriptions, "" for unscoped. */
int store_subscription_scopes(StoreTx *tx, const char *variant_id,
                              StrList *channels);
/* A subscription a check notified. */
typedef struct {
  long long id;
  char *email;
  char *locale; /* NULL when none */
  long long quantity;
  char created_at[ISOTIME_LEN];
} TakenSubscription;

typedef struct {
  TakenSubscription *items;
  size_t n, cap;
} TakenList;

void taken_list_clear(TakenList *l);

/* Moves up to `limit` of the oldest active subscriptions of the scope
 * (`channel` "" for unscoped) that want no more than `quantity` units into
 * the history, notified at `now`, and appends them (oldest first) to
 * *taken; *more says whether any such remain. Subscriptions wanting more
 * stay, whatever their age. `shared_after` is -1, or, where several nodes
 * take the scope at once, the id to take after (0 at first, then the last
 * one this check took): rows another transaction holds (another node's
 * chunk) are then passed over instead of waited for, and the check's next
 * chunk does not walk again the rows the others hold before its last.
 *
 * Between store_take_counts_begin and store_take_counts_end the takes of
 * a scope leave its demand counts alone, and the end adds the `taken` of
 * them at once: on a shared database the counts row is then locked for
 * the end of the check only, not from its first chunk on, so that several
 * nodes can take chunks of one restock at once. A failure between the two
 * must roll the caller's savepoint back. No-ops on a backend whose take
 * counts its chunk itself. */
int store_subscription_take(StoreTx *tx, const char *variant_id,
                            const char *channel, long long quantity,
                            long long limit, const char *now,
                            long long shared_after, TakenList *taken,
                            bool *more);
/* The first and last id of the scope's active subscriptions (0 and 0 for
 * none). */
int store_subscription_span(StoreTx *tx, const char *variant_id,
                            const char *channel, long long *first,
                            long long *last);
int store_take_counts_begin(StoreTx *tx);
int store_take_counts_end(StoreTx *tx, const char *variant_id,
                          const char *channel, long long taken);
/* Whether the scope has any active subscription that wants no more than
 * `quantity` units, held by another transaction or not. */
int store_subscription_scope_any(StoreTx *tx, const char *variant_id,
                                 const char *channel, long long quantity,
                                 bool *any);
/* The same take started ahead: on a backend that can (PostgreSQL), the
 * database runs it while the caller does other work (writes the event of
 * the chunk before), and store_take_finish reads it; elsewhere it is taken
 * at once. Nothing else may run on `tx` in between, and every start is
 * finished, which returns what store_subscription_take would have. */
typedef struct {
  void *pending; /* the statement started, its answer not read */
  bool shared;   /* started with a shared_after */
  int rc;
  TakenList taken;
  bool more;
} StoreTake;

void store_take_start(StoreTx *tx, const char *variant_id, const char *channel,
                      long long quantity, long long limit, const char *now,
                      long long shared_after, StoreTake *t);
int store_take_finish(StoreTx *tx, StoreTake *t, TakenList *taken, bool *more);
/* Moves the active subscriptions of a variant (`channel` NULL: every
 * scope), or of a channel (`variant_id` NULL), to the history as
 * cancelled, and drops their pending ones. *moved gets how many. */
int store_subscription_cancel(StoreTx *tx, const char *variant_id,
                              const char *channel, const char *now,
                              long long *moved);

/* Forgetting an email. The variants of its history, to scrub their
 * restocked events. */
int store_history_variants(StoreTx *tx, const char *email,
                           const char *variant_id, StrList *variants);
/* Takes `email` out of the emails and subscribers of the restocked events
 * of `variant_id` and deletes its per-subscriber deliveries there.
 * *changed adds the events changed. */
int store_event_scrub_restocked(StoreTx *tx, const char *variant_id,
                                const char *email, long long *changed);
/* Deletes the subscribed events of the email's subscriptions and history,
 * and its confirmation_requested events (of one variant if `variant_id`).
 * *deleted adds how many. */
int store_event_erase_subscribed(StoreTx *tx, const char *email,
                                 const char *variant_id, long long *deleted);
/* Events a plugin emitted (every name but restockd's own) whose data holds
 * `email` as a JSON string, in any letter case: (id, data text). */
typedef int (*EventDataFn)(void *ctx, long long id, const char *data);
int store_events_emitted_with(StoreTx *tx, const char *email, EventDataFn fn,
                              void *ctx);
int store_event_set_data(StoreTx *tx, long long id, const char *data);
/* Deletes the email's subscriptions, pending ones and history (of one
 * variant if `variant_id`); *deleted adds how many rows. */
int store_subscription_erase(StoreTx *tx, const char *email,
                             const char *variant_id, long long *deleted);

/* Export: every subscription matching `status` (-1: any) and `variant_id`
 * (NULL: any), in pages. Rows come active first, then pending, then the
 * history, each by id; *cursor (start at 0 and 0) says where the next page
 * starts, and *done when there is none. */
typedef struct {
  int table;    /* 0 active, 1 pending, 2 history, 3 done */
  long long id; /* last id read in that table */
} ExportCursor;
int store_subscription_export(StoreTx *tx, int status, const char *variant_id,
                              long long page, ExportCursor *cursor,
                              SubscriptionRowFn fn, void *ctx);

/* ---- scheduled restock checks (times in ms since the epoch) ------------- */

/* Schedules a check of `variant_id` at `due_at`. Unless `replace`, a check
 * already scheduled is kept as it is. */
int store_check_schedule(StoreTx *tx, const char *variant_id, long long due_at,
                         bool replace);
/* The earliest due time in *due_at, and *any false when none is scheduled. */
int store_check_next(StoreTx *tx, long long *due_at, bool *any);
/* Up to `max` variant ids whose check is due at `now`, earliest first. */
int store_check_due(StoreTx *tx, long long now, long long max, StrList *ids);
int store_check_delete(StoreTx *tx, const char *variant_id);
/* Issue 14: an unthrottled check on a shared database is run by every node
 * that finds it due, at once, each taking other chunks (skip_held). The
 * due ones are read without a lock, the row stays while they run, and the
 * node that finds nothing left deletes it, unless another transaction
 * holds it (a node still taking, a quantity change scheduling it again:
 * that one runs it again) or it was scheduled again past `due_by`. */
int store_check_due_shared(StoreTx *tx, long long now, long long max,
                           StrList *ids);
int store_check_finish(StoreTx *tx, const char *variant_id, long long due_by);
int store_check_count(StoreTx *tx, long long *count);

/* ---- the outbox ------------------------------------------------------------
 */

/* Inserts event `id` (from store_event_next_id, or 0 for any) with its data
 * (JSON text); *out_id gets its id. `variant_id` is a restocked event's
 * variant, which its data holds too: given, the backend need not read it
 * out of the data to index it (NULL: it does, for a restocked event). */
int store_event_insert(StoreTx *tx, long long id, const char *name,
                       const char *data, const char *status,
                       const char *created_at, const char *variant_id,
                       long long *out_id);
/* One pending delivery of an event to a handler; `subscriber` is the email
 * of a per-subscriber delivery, "" for the whole event. `data` (NULL: the
 * event's) is what a per-subscriber delivery's handler gets, so that a
 * claim reads that row's share, not the whole event, each time. */
int store_delivery_insert(StoreTx *tx, long long event_id, const char *handler,
                          const char *subscriber, long long max_attempts,
                          long long next_at, const char *now, const char *data);

typedef struct {
  long long event_id;
  char *handler;
  char *subscriber; /* "" for the whole event */
  long long attempts;
  long long max_attempts;
  char *event; /* the event's name */
  char *data;  /* its data, JSON text */
} DueDelivery;

void due_delivery_clear(DueDelivery *d);
/* Claims up to `max` pending deliveries due at `now`, oldest due first: each
 * gets a lease until `lease_until` in this store's node's name. `handlers`
 * (JSON [[event, handler], ...]) names those this node can run: on a shared
 * database it claims only theirs, and those no live node can run. Fills a
 * new array *out of *n entries (clear each, then free the array). */
int store_delivery_claim(StoreTx *tx, long long now, long long max,
                         long long lease_until, const char *handlers,
                         DueDelivery **out, size_t *n);
/* Records a claimed delivery's outcome, if this node still holds its lease
 * (*kept false otherwise). `error` may be NULL. */
int store_delivery_finish(StoreTx *tx, long long event_id, const char *handler,
                          const char *subscriber, const char *status,
                          long long attempts, long long next_at,
                          const char *error, const char *now, bool *kept);
/* Recomputes an event's status and attempts from its deliveries; a non-NULL
 * `error` becomes its last_error. */
int store_event_refresh(StoreTx *tx, long long event_id, const char *error);
/* The same after one delivery of the event finished with `attempts`
 * attempts, cheaply: with no full refresh since, the event's attempts are
 * the larger of its own and these, and its row is left as it is when
 * nothing about it changed. */
int store_event_finish(StoreTx *tx, long long event_id, long long attempts,
                       const char *error);
/* The earliest next_at of a pending delivery this node could claim (see
 * store_delivery_claim), *any false if there is none. */
int store_delivery_next(StoreTx *tx, const char *handlers, long long *next_at,
                        bool *any);
/* Pushes the lease of every delivery this node runs to `until`. */
int store_delivery_renew(StoreTx *tx, long long until, long long *renewed);
/* The nodes named in leases (for a start-up that releases those of its
 * own dead predecessors). */
int store_delivery_owners(StoreTx *tx, StrList *owners);
/* Makes the leased deliveries of `node` (NULL: of any node) due at `now`.
 * *released gets how many. */
int store_delivery_release(StoreTx *tx, const char *node, long long now,
                           long long *released);
int store_delivery_pending_count(StoreTx *tx, long long *count);

typedef struct {
  long long id;
  const char *name;
  const char *data; /* JSON text */
  const char *status;
  long long attempts;
  const char *last_error; /* NULL when none */
  const char *created_at;
} EventRow;

typedef struct {
  const char *handler;
  const char *subscriber; /* "" for the whole event */
  const char *status;
  long long attempts;
  long long max_attempts;
  const char *last_error;
  const char *updated_at;
} DeliveryRow;

typedef struct {
  /* Called for each event, then `delivery` for each of its deliveries. */
  int (*event)(void *ctx, const EventRow *e);
  int (*delivery)(void *ctx, const DeliveryRow *d);
  void *ctx;
} EventVisitor;
/* Lists events matching `name` and `status` (NULL: any), oldest first, each
 * with its deliveries; *count gets the number of all matches. */
int store_event_list(StoreTx *tx, const char *name, const char *status,
                     long long limit, long long offset, const EventVisitor *v,
                     long long *count);
/* Requeues the dead deliveries of event `id`, due at `now`. 0 with
 * *requeued, or RESTOCK_ENOTFOUND. */
int store_event_retry(StoreTx *tx, long long id, long long now,
                      long long *requeued);
/* Retention: walks events after `after_id`, oldest first, at most `max`
 * (at most 512), deleting the delivered ones created before `cutoff`. Stops
 * at the first event created at or after `cutoff`, setting *reached.
 * *last_id gets the last event walked past. */
int store_event_prune(StoreTx *tx, long long after_id, const char *cutoff,
                      long long max, long long *last_id, long long *deleted,
                      bool *reached);

/* ---- multi-warehouse
 * --------------------------------------------------------- */

typedef struct {
  char id[256];
  char *name; /* NULL when unset */
  char created_at[ISOTIME_LEN];
  char updated_at[ISOTIME_LEN];
  StrList ids; /* a channel's locations, a key's channels */
} NamedRow;

void named_row_clear(NamedRow *r);

/* Upserts a stock location; `name` NULL keeps the stored one. *out gets the
 * row. */
int store_location_put(StoreTx *tx, const char *id, const char *name,
                       NamedRow *out);
int store_location_exists(StoreTx *tx, const char *id, bool *exists);
/* Deletes a location with its levels and channel links; the variants whose
 * levels went are appended to *variants. 0 or RESTOCK_ENOTFOUND. */
int store_location_delete(StoreTx *tx, const char *id, StrList *variants);
/* Upserts a sales channel. `locations` (existing ids), if not NULL,
 * replaces its locations exactly; *added gets those not linked before. */
int store_channel_put(StoreTx *tx, const char *id, const char *name,
                      const StrList *locations, NamedRow *out, StrList *added);
int store_channel_exists(StoreTx *tx, const char *id, bool *exists);
/* Deletes a channel with its links (its subscriptions are the caller's).
 * 0 or RESTOCK_ENOTFOUND. */
int store_channel_delete(StoreTx *tx, const char *id);
/* sum(stocked - reserved) of the variant's levels at the channel's
 * locations; RESTOCK_ERANGE if it overflows. */
int store_channel_quantity(StoreTx *tx, const char *variant_id,
                           const char *channel, long long *quantity);

typedef struct {
  const char *variant_id;
  const char *location_id;
  long long stocked;
  long long reserved;
  const char *created_at;
  const char *updated_at;
} LevelRow;

/* Upserts an inventory level; *before gets its former available quantity
 * (0 for a new one), `fn` (if not NULL) the stored row. */
typedef int (*LevelRowFn)(void *ctx, const LevelRow *row);
int store_level_put(StoreTx *tx, const char *variant_id,
                    const char *location_id, long long stocked,
                    long long reserved, const char *now, long long *before,
                    LevelRowFn fn, void *ctx);
/* A level's quantities; RESTOCK_ENOTFOUND if none. */
int store_level_get(StoreTx *tx, const char *variant_id,
                    const char *location_id, long long *stocked,
                    long long *reserved);
/* The levels of a variant, or of a location (the other NULL). */
int store_level_list(StoreTx *tx, const char *variant_id,
                     const char *location_id, LevelRowFn fn, void *ctx);
/* Sets the variant's inventory_quantity to the sum over its levels; *sum
 * gets it. RESTOCK_ERANGE when the sum overflows (nothing written). */
int store_variant_sync_levels(StoreTx *tx, const char *variant_id,
                              const char *now, long long *sum);
/* Upserts a publishable API key with exactly `channels` (existing; NULL
 * keeps the stored ones). */
int store_key_put(StoreTx *tx, const char *id, const StrList *channels,
                  NamedRow *out);
/* The channels of key `id`, or RESTOCK_ENOTFOUND. */
int store_key_channels(StoreTx *tx, const char *id, StrList *channels);
int store_key_delete(StoreTx *tx, const char *id);
/* Variants with a level at `location` and a subscription in `channel`. */
int store_variants_to_check(StoreTx *tx, const char *location,
                            const char *channel, StrList *variant_ids);

typedef enum { NAMED_LOCATIONS, NAMED_CHANNELS, NAMED_KEYS } NamedKind;
typedef int (*NamedRowFn)(void *ctx, const NamedRow *row);
/* Lists locations, channels (with their locations) or keys (with their
 * channels) by id; *count gets the total. */
int store_named_list(StoreTx *tx, NamedKind kind, long long limit,
                     long long offset, NamedRowFn fn, void *ctx,
                     long long *count);

/* ---- meta ------------------------------------------------------------------
 */

/* Reads a meta value into a new string (*out), or RESTOCK_ENOTFOUND. */
int store_meta_get(StoreTx *tx, const char *key, char **out);
int store_meta_put(StoreTx *tx, const char *key, const char *value);
/* Stores `value` unless the key has one already (several nodes starting at
 * once keep the first). */
int store_meta_add(StoreTx *tx, const char *key, const char *value);

/* ---- nodes (a shared database; no-ops on SQLite) ---------------------------
 */

/* This node's heartbeat: its row, with the handlers its script subscribed
 * (JSON [[event, handler, max_attempts, each], ...]). */
int store_node_beat(StoreTx *tx, const char *started_at, const char *version,
                    const char *handlers);
typedef struct {
  const char *id;
  const char *started_at;
  const char *last_seen_at;
  const char *version;
} NodeRow;
typedef int (*NodeRowFn)(void *ctx, const NodeRow *row);
int store_node_list(StoreTx *tx, NodeRowFn fn, void *ctx);
/* The handlers (JSON, one entry per node) of the other live nodes. */
int store_node_peers(StoreTx *tx, StrList *handlers);
/* Removes this node's row (a clean stop). */
int store_node_delete(StoreTx *tx);

/* ---- shop connectors (issue 16) ------------------------------------------ */

/* restock.kv: the value of `key` that has not expired at `now_ms`, in a new
 * string (*out), or RESTOCK_ENOTFOUND. */
int store_kv_get(StoreTx *tx, const char *key, long long now_ms, char **out);
/* Sets `key` to `value` (NULL deletes it), expiring at `expires_at` ms
 * since the epoch (0: never), and deletes a few rows that had expired by
 * `now_ms`. */
int store_kv_put(StoreTx *tx, const char *key, const char *value,
                 long long expires_at, long long now_ms);

/* Takes or renews the lease of periodic task `name` for this store's node
 * until `until_ms`, unless another node holds one that has not run out at
 * `now_ms`. *held says whether this node holds it now. */
int store_lease_claim(StoreTx *tx, const char *name, long long now_ms,
                      long long until_ms, bool *held);
/* Gives this node's lease of `name` back (if it holds it). */
int store_lease_release(StoreTx *tx, const char *name);

/* Records a shop's order by its id; *inserted is false when it was
 * recorded before. */
int store_order_insert(StoreTx *tx, const char *order_id,
                       const char *created_at, const char *now, bool *inserted);
/* The id of the newest notification of `variant_id` to `email` sent in
 * [from, to] (stored times) that has not converted, or RESTOCK_ENOTFOUND. */
int store_conversion_candidate(StoreTx *tx, const char *email,
                               const char *variant_id, const char *from,
                               const char *to, long long *history_id);
/* Marks notification `history_id` converted by `order_id` at `at`, with
 * `amount` millionths of `currency`'s major unit; *marked is false when it
 * had converted already. */
int store_conversion_mark(StoreTx *tx, long long history_id, const char *at,
                          const char *order_id, const char *currency,
                          long long amount, bool *marked);

/* The notifications a conversions report counts: sent in [since, until)
 * (stored times), of `variant_id` (NULL: any). */
typedef struct {
  const char *since;
  const char *until;
  const char *variant_id;
} ConversionFilter;
/* How many were sent, and how many of them converted. */
int store_conversion_totals(StoreTx *tx, const ConversionFilter *f,
                            long long *notified, long long *converted);
/* Their revenue per currency (millionths of the major unit), by currency
 * code. RESTOCK_ESTORE if a sum overflows. */
typedef int (*RevenueRowFn)(void *ctx, const char *currency, long long amount);
int store_conversion_revenue(StoreTx *tx, const ConversionFilter *f,
                             RevenueRowFn fn, void *ctx);
/* One variant's counts in a conversions report. */
typedef struct {
  char variant_id[256];
  long long notified, converted;
} ConversionVariant;
/* The variants with notifications matching `f`, most converted first (then
 * most notified, then by id), `limit` from `offset`, in a new array *out of
 * *n entries (free it); *count gets how many variants match. */
int store_conversion_variants(StoreTx *tx, const ConversionFilter *f,
                              long long limit, long long offset,
                              ConversionVariant **out, size_t *n,
                              long long *count);

/* ---- the web console (issue 17) -------------------------------------------
 */

/* Stores a console session: `selector` names it, `validator_hash` is the
 * hex SHA-256 of its secret half; it ends at `expires_at` (ms). */
int store_session_put(StoreTx *tx, const char *selector,
                      const char *validator_hash, const char *created_at,
                      long long expires_at);
/* The session `selector` if it has not ended at `now`: its validator hash
 * (65 bytes with the NUL) and end. 0 or RESTOCK_ENOTFOUND. */
int store_session_get(StoreTx *tx, const char *selector, long long now,
                      char validator_hash[65], long long *expires_at);
int store_session_delete(StoreTx *tx, const char *selector);
/* Deletes the sessions that ended by `now`; *deleted gets how many. */
int store_session_prune(StoreTx *tx, long long now, long long *deleted);

/* One row of the demand report: a variant with active subscriptions (in
 * the scope asked for), with the counts migration 011's triggers keep and
 * the time its oldest active subscription was made. */
typedef struct {
  const Variant *variant;
  long long waiting;
  long long notified;
  long long converted; /* notifications an order converted */
  const char *oldest_waiting_since;
} DemandRow;
typedef int (*DemandRowFn)(StoreTx *tx, void *ctx, const DemandRow *row);
/* The variants with active subscriptions, most waiting first (ties by id):
 * every scope when `channel` is NULL, else those scoped to `channel`.
 * *count gets the number of such variants. `fn` runs once every row has
 * been read, so it may use `tx` itself (a scope's quantity). */
int store_demand_list(StoreTx *tx, const char *channel, long long limit,
                      long long offset, DemandRowFn fn, void *ctx,
                      long long *count);
/* The restocked events of `variant_id` (status NULL: any), oldest first,
 * each with its deliveries, as store_event_list. */
int store_event_list_variant(StoreTx *tx, const char *variant_id,
                             const char *status, long long limit,
                             long long offset, const EventVisitor *v,
                             long long *count);

#endif
