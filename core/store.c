#include "store.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "isotime.h"
#include "json_text.h"
#include "log.h"
#include "xmalloc.h"

/* Every statement the server runs. They are prepared on first use, because
 * the tables they name exist only once the migrations have run. */
typedef enum {
  SQL_BEGIN,
  SQL_COMMIT,
  SQL_ROLLBACK,
  SQL_SAVEPOINT,
  SQL_RELEASE,
  SQL_ROLLBACK_TO,
  SQL_VARIANT_GET,
  SQL_VARIANT_PUT,
  SQL_VARIANT_QUANTITY,
  SQL_SUB_INSERT,
  SQL_SUB_CREATED,
  /* Each listing in three forms, in this order: any filter, by email, by
   * variant (see filter_form). */
  SQL_SUB_LIST,
  SQL_SUB_LIST_BY_EMAIL,
  SQL_SUB_LIST_BY_VARIANT,
  SQL_SUB_COUNT,
  SQL_SUB_COUNT_BY_EMAIL,
  SQL_SUB_COUNT_BY_VARIANT,
  SQL_HIST_LIST,
  SQL_HIST_LIST_BY_EMAIL,
  SQL_HIST_LIST_BY_VARIANT,
  SQL_HIST_COUNT,
  SQL_HIST_COUNT_BY_EMAIL,
  SQL_HIST_COUNT_BY_VARIANT,
  SQL_SUB_TOTAL,
  SQL_SUB_ERASE,
  SQL_HIST_ERASE,
  SQL_HIST_VARIANTS,
  SQL_EVENT_SCRUB_RESTOCKED,
  SQL_EVENT_ERASE_SUBSCRIBED,
  SQL_EVENT_EMITTED_WITH,
  SQL_EVENT_SET_DATA,
  SQL_SUB_SET_EVENT,
  SQL_EVENT_NEXT_ID,
  SQL_EVENT_SCAN,
  SQL_EVENT_DELETE,
  SQL_META_GET,
  SQL_META_PUT,
  SQL_SUB_ANY,
  SQL_SUB_SCOPES,
  SQL_SUB_TAKE,
  SQL_SUB_TO_HISTORY,
  SQL_SUB_DELETE_UPTO,
  SQL_SUB_SCOPE_ANY,
  SQL_SUB_REMOVE,
  SQL_CHECK_INSERT,
  SQL_CHECK_REPLACE,
  SQL_CHECK_NEXT,
  SQL_CHECK_DUE,
  SQL_CHECK_DELETE,
  SQL_CHECK_COUNT,
  SQL_EVENT_INSERT,
  SQL_DELIVERY_INSERT,
  SQL_DELIVERY_DUE,
  SQL_DELIVERY_LEASE,
  SQL_DELIVERY_UPDATE,
  SQL_EVENT_REFRESH,
  SQL_DELIVERY_NEXT,
  SQL_EVENT_LIST,
  SQL_EVENT_COUNT,
  SQL_EVENT_LIST_OPEN,
  SQL_EVENT_COUNT_OPEN,
  SQL_EVENT_LIST_NAMED,
  SQL_EVENT_COUNT_NAMED,
  SQL_EVENT_DELIVERIES,
  SQL_EVENT_EXISTS,
  SQL_EVENT_RETRY,
  SQL_DELIVERY_PENDING,
  SQL_LOCATION_UPSERT,
  SQL_LOCATION_GET,
  SQL_CHANNEL_UPSERT,
  SQL_CHANNEL_GET,
  SQL_CHANNEL_LOCATIONS,
  SQL_CHANNEL_LOC_CLEAR,
  SQL_CHANNEL_LOC_ADD,
  SQL_CHANNEL_QUANTITY,
  SQL_LEVEL_GET,
  SQL_LEVEL_UPSERT,
  SQL_LEVEL_SUM,
  SQL_VARIANT_SET_QTY,
  SQL_KEY_UPSERT,
  SQL_KEY_GET,
  SQL_KEY_CHANNELS,
  SQL_KEY_CLEAR,
  SQL_KEY_ADD,
  SQL_VARIANTS_TO_CHECK,
  SQL_COUNT_
} StmtId;

/* The filter of the subscription listings: each parameter either is NULL
 * (matches anything) or must equal its column. */
/* The event no partial index of events_named covers. */
#define SUBSCRIBED_NAME "restock-notification.subscribed"
#define SUBSCRIBED_SQL "'" SUBSCRIBED_NAME "'"

/* The filters of the admin listings: ?1 variant, ?2 email, ?3 channel, each
 * NULL for any. "(?N IS NULL OR col = ?N)" is planned as a walk of the
 * table, so when the email or the variant is given the listing uses a form
 * whose plain equality lets SQLite search its index. */
#define SUB_FILTER                         \
  " WHERE (?1 IS NULL OR variant_id = ?1)" \
  " AND (?2 IS NULL OR email = ?2)"        \
  " AND (?3 IS NULL OR sales_channel_id = ?3)"
#define SUB_FILTER_BY_EMAIL              \
  " WHERE email = ?2"                    \
  " AND (?1 IS NULL OR variant_id = ?1)" \
  " AND (?3 IS NULL OR sales_channel_id = ?3)"
#define SUB_FILTER_BY_VARIANT       \
  " WHERE variant_id = ?1"          \
  " AND (?2 IS NULL OR email = ?2)" \
  " AND (?3 IS NULL OR sales_channel_id = ?3)"
#define SUB_LIST(table, last, filter)                             \
  "SELECT variant_id, sales_channel_id, email, created_at, " last \
  " FROM " table filter " ORDER BY id LIMIT ?4 OFFSET ?5"

static const char *const sql_text[SQL_COUNT_] = {
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_SAVEPOINT] = "SAVEPOINT w",
    [SQL_RELEASE] = "RELEASE w",
    [SQL_ROLLBACK_TO] = "ROLLBACK TO w",
    [SQL_VARIANT_GET] =
        "SELECT id, product_id, sku, title, inventory_quantity,"
        " allow_backorder, manage_inventory, created_at, updated_at,"
        " EXISTS (SELECT 1 FROM inventory_levels WHERE variant_id = ?1)"
        " FROM variants WHERE id = ?1",
    [SQL_VARIANT_PUT] =
        "INSERT OR REPLACE INTO variants (id, product_id, sku, title,"
        " inventory_quantity, allow_backorder, manage_inventory, created_at,"
        " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [SQL_VARIANT_QUANTITY] =
        "UPDATE variants SET inventory_quantity = ?2, updated_at = ?3"
        " WHERE id = ?1",
    [SQL_SUB_INSERT] =
        "INSERT OR IGNORE INTO restock_subscriptions"
        " (variant_id, sales_channel_id, email, created_at,"
        " subscribed_event_id)"
        " VALUES (?1, ?2, ?3, ?4, ?5)",
    [SQL_EVENT_NEXT_ID] = "SELECT coalesce(max(id), 0) + 1 FROM events",
    [SQL_SUB_CREATED] =
        "SELECT created_at FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 AND email = ?3",
    [SQL_SUB_LIST] = SUB_LIST("restock_subscriptions", "NULL", SUB_FILTER),
    [SQL_SUB_LIST_BY_EMAIL] =
        SUB_LIST("restock_subscriptions", "NULL", SUB_FILTER_BY_EMAIL),
    [SQL_SUB_LIST_BY_VARIANT] =
        SUB_LIST("restock_subscriptions", "NULL", SUB_FILTER_BY_VARIANT),
    [SQL_SUB_COUNT] = "SELECT count(*) FROM restock_subscriptions" SUB_FILTER,
    [SQL_SUB_COUNT_BY_EMAIL] =
        "SELECT count(*) FROM restock_subscriptions" SUB_FILTER_BY_EMAIL,
    [SQL_SUB_COUNT_BY_VARIANT] =
        "SELECT count(*) FROM restock_subscriptions" SUB_FILTER_BY_VARIANT,
    [SQL_HIST_LIST] = SUB_LIST("restock_history", "notified_at", SUB_FILTER),
    [SQL_HIST_LIST_BY_EMAIL] =
        SUB_LIST("restock_history", "notified_at", SUB_FILTER_BY_EMAIL),
    [SQL_HIST_LIST_BY_VARIANT] =
        SUB_LIST("restock_history", "notified_at", SUB_FILTER_BY_VARIANT),
    [SQL_HIST_COUNT] = "SELECT count(*) FROM restock_history" SUB_FILTER,
    [SQL_HIST_COUNT_BY_EMAIL] =
        "SELECT count(*) FROM restock_history" SUB_FILTER_BY_EMAIL,
    [SQL_HIST_COUNT_BY_VARIANT] =
        "SELECT count(*) FROM restock_history" SUB_FILTER_BY_VARIANT,
    /* No WHERE: SQLite counts the entries of the smallest index. */
    [SQL_SUB_TOTAL] = "SELECT count(*) FROM restock_subscriptions",
    [SQL_SUB_ERASE] =
        "DELETE FROM restock_subscriptions"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    [SQL_HIST_ERASE] =
        "DELETE FROM restock_history"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    [SQL_HIST_VARIANTS] =
        "SELECT DISTINCT variant_id FROM restock_history"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    /* The expressions match the partial indexes of migration 004. */
    [SQL_EVENT_SCRUB_RESTOCKED] =
        "UPDATE events SET data = json_set(data, '$.emails',"
        " (SELECT json_group_array(value) FROM json_each(events.data,"
        " '$.emails') WHERE value != ?2))"
        " WHERE name = 'restock-notification.restocked'"
        " AND json_extract(data, '$.variant_id') = ?1"
        " AND instr(data, json_quote(?2)) > 0",
    /* Events a plugin emitted (every name but restockd's own three) whose
     * data holds the email as a JSON string, in any letter case. Walks
     * events_named (migration 007), which leaves subscribed events out. */
    [SQL_EVENT_EMITTED_WITH] =
        "SELECT id, data FROM events INDEXED BY events_named"
        " WHERE name != " SUBSCRIBED_SQL
        " AND name NOT IN ('restock-notification.restocked',"
        " 'product-variant.updated')"
        " AND instr(lower(data), json_quote(?1)) > 0",
    [SQL_EVENT_SET_DATA] = "UPDATE events SET data = ?2 WHERE id = ?1",
    [SQL_EVENT_ERASE_SUBSCRIBED] =
        "DELETE FROM events WHERE id IN ("
        " SELECT subscribed_event_id FROM restock_subscriptions"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)"
        " UNION SELECT subscribed_event_id FROM restock_history"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2))",
    [SQL_EVENT_SCAN] =
        "SELECT id, status, created_at FROM events WHERE id > ?1"
        " ORDER BY id LIMIT ?2",
    [SQL_EVENT_DELETE] = "DELETE FROM events WHERE id = ?1",
    [SQL_SUB_SET_EVENT] =
        "UPDATE restock_subscriptions SET subscribed_event_id = ?2"
        " WHERE id = ?1",
    [SQL_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [SQL_META_PUT] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
    [SQL_SUB_ANY] =
        "SELECT 1 FROM restock_subscriptions WHERE variant_id = ?1 LIMIT 1",
    [SQL_SUB_SCOPES] =
        "SELECT DISTINCT sales_channel_id FROM restock_subscriptions"
        " WHERE variant_id = ?1 ORDER BY sales_channel_id",
    [SQL_SUB_TAKE] =
        "SELECT id, email FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 ORDER BY id"
        " LIMIT ?3",
    [SQL_SUB_TO_HISTORY] =
        "INSERT INTO restock_history (variant_id, sales_channel_id, email,"
        " created_at, notified_at, subscribed_event_id)"
        " SELECT variant_id, sales_channel_id, email, created_at, ?4,"
        " subscribed_event_id"
        " FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 AND id <= ?3"
        " ORDER BY id",
    [SQL_SUB_DELETE_UPTO] =
        "DELETE FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 AND id <= ?3",
    [SQL_SUB_SCOPE_ANY] =
        "SELECT 1 FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 LIMIT 1",
    [SQL_SUB_REMOVE] =
        "DELETE FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 AND email = ?3",
    [SQL_CHECK_INSERT] =
        "INSERT OR IGNORE INTO restock_checks (variant_id, due_at)"
        " VALUES (?1, ?2)",
    [SQL_CHECK_REPLACE] =
        "INSERT OR REPLACE INTO restock_checks (variant_id, due_at)"
        " VALUES (?1, ?2)",
    [SQL_CHECK_NEXT] = "SELECT min(due_at) FROM restock_checks",
    [SQL_CHECK_DUE] =
        "SELECT variant_id FROM restock_checks WHERE due_at <= ?1"
        " ORDER BY due_at LIMIT ?2",
    [SQL_CHECK_DELETE] = "DELETE FROM restock_checks WHERE variant_id = ?1",
    [SQL_CHECK_COUNT] = "SELECT count(*) FROM restock_checks",
    [SQL_EVENT_INSERT] =
        "INSERT INTO events (name, data, status, created_at)"
        " VALUES (?1, ?2, ?3, ?4)",
    [SQL_DELIVERY_INSERT] =
        "INSERT INTO deliveries (event_id, handler, max_attempts, next_at,"
        " updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [SQL_DELIVERY_DUE] =
        "SELECT d.event_id, d.handler, d.attempts, d.max_attempts, e.name,"
        " e.data FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.status = 'pending' AND d.next_at <= ?1"
        " ORDER BY d.next_at, d.event_id LIMIT ?2",
    [SQL_DELIVERY_LEASE] =
        "UPDATE deliveries SET next_at = ?3"
        " WHERE event_id = ?1 AND handler = ?2",
    [SQL_DELIVERY_UPDATE] =
        "UPDATE deliveries SET status = ?3, attempts = ?4, next_at = ?5,"
        " last_error = coalesce(?6, last_error), updated_at = ?7"
        " WHERE event_id = ?1 AND handler = ?2",
    [SQL_EVENT_REFRESH] =
        "UPDATE events SET"
        " status = CASE"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1"
        "               AND status = 'pending') THEN 'pending'"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1"
        "               AND status = 'dead') THEN 'dead'"
        "  ELSE 'delivered' END,"
        " attempts = (SELECT coalesce(max(attempts), 0) FROM deliveries"
        "             WHERE event_id = ?1),"
        " last_error = coalesce(?2, last_error)"
        " WHERE id = ?1",
    [SQL_DELIVERY_NEXT] =
        "SELECT min(next_at) FROM deliveries WHERE status = 'pending'",
    [SQL_EVENT_LIST] =
        "SELECT id, name, data, status, attempts, last_error, created_at"
        " FROM events WHERE (?1 IS NULL OR name = ?1)"
        " AND (?2 IS NULL OR status = ?2) ORDER BY id LIMIT ?3 OFFSET ?4",
    [SQL_EVENT_COUNT] =
        "SELECT count(*) FROM events WHERE (?1 IS NULL OR name = ?1)"
        " AND (?2 IS NULL OR status = ?2)",
    /* The same for a status other than delivered: the literal condition
     * lets SQLite use the partial index events_open. */
    [SQL_EVENT_LIST_OPEN] =
        "SELECT id, name, data, status, attempts, last_error, created_at"
        " FROM events WHERE (?1 IS NULL OR name = ?1)"
        " AND status = ?2 AND status != 'delivered'"
        " ORDER BY id LIMIT ?3 OFFSET ?4",
    [SQL_EVENT_COUNT_OPEN] =
        "SELECT count(*) FROM events WHERE (?1 IS NULL OR name = ?1)"
        " AND status = ?2 AND status != 'delivered'",
    /* Any other name: the literal condition lets SQLite use the partial
     * index events_named (migration 007). */
    [SQL_EVENT_LIST_NAMED] =
        "SELECT id, name, data, status, attempts, last_error, created_at"
        " FROM events WHERE name = ?1 AND name != " SUBSCRIBED_SQL
        " AND (?2 IS NULL OR status = ?2) ORDER BY id LIMIT ?3 OFFSET ?4",
    [SQL_EVENT_COUNT_NAMED] =
        "SELECT count(*) FROM events WHERE name = ?1 AND name "
        "!= " SUBSCRIBED_SQL " AND (?2 IS NULL OR status = ?2)",
    [SQL_EVENT_DELIVERIES] =
        "SELECT handler, status, attempts, max_attempts, last_error,"
        " updated_at FROM deliveries WHERE event_id = ?1 ORDER BY rowid",
    [SQL_EVENT_EXISTS] = "SELECT 1 FROM events WHERE id = ?1",
    [SQL_EVENT_RETRY] =
        "UPDATE deliveries SET status = 'pending', attempts = 0,"
        " next_at = ?2, updated_at = ?3"
        " WHERE event_id = ?1 AND status = 'dead'",
    [SQL_DELIVERY_PENDING] =
        "SELECT count(*) FROM deliveries WHERE status = 'pending'",
    [SQL_LOCATION_UPSERT] =
        "INSERT INTO stock_locations (id, name, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?3) ON CONFLICT (id) DO UPDATE SET"
        " name = CASE WHEN ?4 THEN ?2 ELSE name END, updated_at = ?3",
    [SQL_LOCATION_GET] =
        "SELECT id, name, created_at, updated_at FROM stock_locations"
        " WHERE id = ?1",
    [SQL_CHANNEL_UPSERT] =
        "INSERT INTO sales_channels (id, name, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?3) ON CONFLICT (id) DO UPDATE SET"
        " name = CASE WHEN ?4 THEN ?2 ELSE name END, updated_at = ?3",
    [SQL_CHANNEL_GET] =
        "SELECT id, name, created_at, updated_at FROM sales_channels"
        " WHERE id = ?1",
    [SQL_CHANNEL_LOCATIONS] =
        "SELECT location_id FROM sales_channel_locations"
        " WHERE sales_channel_id = ?1 ORDER BY location_id",
    [SQL_CHANNEL_LOC_CLEAR] =
        "DELETE FROM sales_channel_locations WHERE sales_channel_id = ?1",
    [SQL_CHANNEL_LOC_ADD] =
        "INSERT OR IGNORE INTO sales_channel_locations"
        " (sales_channel_id, location_id) VALUES (?1, ?2)",
    [SQL_CHANNEL_QUANTITY] =
        "SELECT coalesce(sum(l.stocked_quantity - l.reserved_quantity), 0)"
        " FROM inventory_levels l JOIN sales_channel_locations c"
        " ON c.location_id = l.location_id"
        " WHERE l.variant_id = ?1 AND c.sales_channel_id = ?2",
    [SQL_LEVEL_GET] =
        "SELECT stocked_quantity, reserved_quantity FROM inventory_levels"
        " WHERE variant_id = ?1 AND location_id = ?2",
    [SQL_LEVEL_UPSERT] =
        "INSERT INTO inventory_levels (variant_id, location_id,"
        " stocked_quantity, reserved_quantity, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (variant_id, location_id)"
        " DO UPDATE SET stocked_quantity = ?3, reserved_quantity = ?4,"
        " updated_at = ?5"
        " RETURNING variant_id, location_id, stocked_quantity,"
        " reserved_quantity, created_at, updated_at",
    [SQL_LEVEL_SUM] =
        "SELECT coalesce(sum(stocked_quantity - reserved_quantity), 0)"
        " FROM inventory_levels WHERE variant_id = ?1",
    [SQL_VARIANT_SET_QTY] =
        "UPDATE variants SET inventory_quantity = ?2, updated_at = ?3"
        " WHERE id = ?1 AND inventory_quantity != ?2",
    [SQL_KEY_UPSERT] =
        "INSERT INTO publishable_api_keys (id, created_at, updated_at)"
        " VALUES (?1, ?2, ?2) ON CONFLICT (id) DO UPDATE SET updated_at = ?2",
    [SQL_KEY_GET] = "SELECT 1 FROM publishable_api_keys WHERE id = ?1",
    [SQL_KEY_CHANNELS] =
        "SELECT sales_channel_id FROM publishable_api_key_channels"
        " WHERE key_id = ?1 ORDER BY sales_channel_id",
    [SQL_KEY_CLEAR] =
        "DELETE FROM publishable_api_key_channels WHERE key_id = ?1",
    [SQL_KEY_ADD] =
        "INSERT OR IGNORE INTO publishable_api_key_channels"
        " (key_id, sales_channel_id) VALUES (?1, ?2)",
    [SQL_VARIANTS_TO_CHECK] =
        "SELECT DISTINCT l.variant_id FROM inventory_levels l"
        " WHERE l.location_id = ?1 AND EXISTS (SELECT 1 FROM"
        " restock_subscriptions s WHERE s.variant_id = l.variant_id"
        " AND s.sales_channel_id = ?2)",
};

/* WAL frames not yet copied into the database past which a commit queues
 * a checkpoint (SQLite's own default threshold). Counting only the frames
 * since the last pass, not the whole WAL, matters under a steady load: the
 * WAL is then never reset, and passes would otherwise run back to back,
 * each copying the few frames of the last milliseconds and paying two
 * fsyncs for them. A pass over 1000 frames copies each hot page once. */
#define CHECKPOINT_FRAMES 1000
/* Under a steady stream of commits a background checkpoint never quite
 * catches up, and SQLite restarts the WAL only once one has. Past
 * CATCH_UP_FRAMES (64 MiB) the loop itself checkpoints the frames the last
 * background pass left, once commits have paused for CATCH_UP_QUIET_MS, so
 * that the next commit restarts the WAL; past CATCH_UP_MAX_FRAMES (256 MiB)
 * it does so at once, load or not, to bound the disk the WAL takes. That
 * costs the loop two fsyncs (about 25 ms here under full load, once every
 * 2 s of it); 1 GiB cost one stall of 200 ms, most of it truncating the
 * file (see store_checkpoint_in_background). */
#define CATCH_UP_FRAMES 16000
#define CATCH_UP_MAX_FRAMES 65536
#define CATCH_UP_QUIET_MS 200

struct Store {
  char *path;
  sqlite3 *db;
  uv_loop_t *loop;      /* set when checkpoints run in the background */
  uv_work_t checkpoint; /* the queued or running checkpoint */
  bool checkpointing;
  int wal_frames;         /* after the last commit */
  int backfilled;         /* WAL frames the last pass copied */
  uint64_t last_commit;   /* uv_now() of the last commit */
  uv_timer_t quiet;       /* waits for a pause in commits to catch up */
  sqlite3 *checkpoint_db; /* used on the thread pool only */
  sqlite3_stmt *stmt[SQL_COUNT_];
  bool group;    /* group commit on */
  bool in_group; /* a group transaction is open */
  void (*on_open)(void *);
  void *on_open_arg;
  void (*on_commit)(void);
  void (*on_rollback)(void);
};

/* Opens a connection to `path`. Returns it, or NULL with a message in *err
 * (free it). */
static sqlite3 *open_db(const char *path, int flags, int busy_ms, char **err) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    *err = xasprintf("cannot open database %s: %s", path,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, busy_ms);
  return db;
}

static Store *store_new(sqlite3 *db, const char *path) {
  Store *s = xcalloc(1, sizeof *s);
  s->db = db;
  s->path = xstrdup(path);
  return s;
}

int store_open(const char *path, Store **out, char **err) {
  /* SQLite's allocation statistics take a global mutex on every malloc and
   * free (3% of a subscribe); nothing here reads them. Only possible before
   * the library initializes, so later calls are refused, harmlessly. */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  sqlite3 *db =
      open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, 2000, err);
  if (!db) return -1;
  /* WAL lets readers (a second process running `migrations status`, say) work
   * beside the server. synchronous=NORMAL in WAL mode keeps every committed
   * transaction across a crash or kill of the process; only an OS crash or a
   * power cut can lose the last ones. */
  const char *setup =
      "PRAGMA journal_mode=WAL;"
      "PRAGMA synchronous=NORMAL;"
      "PRAGMA foreign_keys=ON;";
  char *msg = NULL;
  if (sqlite3_exec(db, setup, NULL, NULL, &msg) != SQLITE_OK) {
    *err = xasprintf("cannot set up database %s: %s", path,
                     msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_close(db);
    return -1;
  }
  *out = store_new(db, path);
  return 0;
}

int store_open_reader(const char *path, Store **out, char **err) {
  /* Off the loop: waiting for a lock blocks nobody else. */
  sqlite3 *db = open_db(path, SQLITE_OPEN_READONLY, 5000, err);
  if (!db) return -1;
  *out = store_new(db, path);
  return 0;
}

void store_close(Store *s) {
  if (!s) return;
  for (int i = 0; i < SQL_COUNT_; i++) sqlite3_finalize(s->stmt[i]);
  sqlite3_close(s->checkpoint_db);
  sqlite3_close(s->db);
  free(s->path);
  free(s);
}

/* On the thread pool: a passive checkpoint, which copies what it can of the
 * WAL into the database without waiting for (or blocking) the writer. */
static void checkpoint_work(uv_work_t *w) {
  Store *s = w->data;
  if (!s->checkpoint_db) {
    /* A connection learns that the database is in WAL mode only when it
     * first reads it: until then a checkpoint does nothing. */
    if (sqlite3_open_v2(s->path, &s->checkpoint_db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_exec(s->checkpoint_db, "SELECT 1 FROM sqlite_master LIMIT 1",
                     NULL, NULL, NULL) != SQLITE_OK) {
      sqlite3_close(s->checkpoint_db);
      s->checkpoint_db = NULL;
      return;
    }
    sqlite3_busy_timeout(s->checkpoint_db, 1000);
  }
  int log = 0, done_frames = 0;
  if (sqlite3_wal_checkpoint_v2(s->checkpoint_db, NULL,
                                SQLITE_CHECKPOINT_PASSIVE, &log,
                                &done_frames) == SQLITE_OK &&
      done_frames > 0)
    s->backfilled = done_frames; /* read on the loop after checkpoint_done */
}

/* The loop's own checkpoint of what the background passes left over. */
static void catch_up(Store *s) {
  if (s->checkpointing || !sqlite3_get_autocommit(s->db)) return;
  sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  s->wal_frames = 0;
  s->backfilled = 0;
}

static void on_quiet(uv_timer_t *t) {
  Store *s = t->data;
  if (s->wal_frames < CATCH_UP_FRAMES) return;
  if (uv_now(s->loop) - s->last_commit >= CATCH_UP_QUIET_MS)
    catch_up(s);
  else
    uv_timer_start(&s->quiet, on_quiet, CATCH_UP_QUIET_MS, 0);
}

static void checkpoint_done(uv_work_t *w, int status) {
  Store *s = w->data;
  s->checkpointing = false;
  if (s->wal_frames >= CATCH_UP_MAX_FRAMES)
    catch_up(s);
  else if (s->wal_frames >= CATCH_UP_FRAMES &&
           !uv_is_active((uv_handle_t *)&s->quiet))
    uv_timer_start(&s->quiet, on_quiet, CATCH_UP_QUIET_MS, 0);
}

static void queue_checkpoint(Store *s) {
  s->checkpointing = true;
  s->checkpoint.data = s;
  if (uv_queue_work(s->loop, &s->checkpoint, checkpoint_work,
                    checkpoint_done) != 0)
    s->checkpointing = false;
}

/* The WAL hook, after each commit on the server's connection. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames) {
  Store *s = arg;
  if (frames < s->wal_frames) s->backfilled = 0; /* the WAL was restarted */
  s->wal_frames = frames;
  s->last_commit = uv_now(s->loop);
  if (frames - s->backfilled >= CHECKPOINT_FRAMES && !s->checkpointing)
    queue_checkpoint(s);
  return SQLITE_OK;
}

void store_checkpoint_in_background(Store *s, uv_loop_t *loop) {
  s->loop = loop;
  uv_timer_init(loop, &s->quiet);
  s->quiet.data = s;
  uv_unref((uv_handle_t *)&s->quiet); /* it never keeps the loop running */
  /* Replaces SQLite's automatic checkpoint, which uses the same hook. */
  sqlite3_wal_hook(s->db, on_wal_commit, s);
  /* No journal_size_limit: SQLite would truncate a restarted WAL in the
   * commit that follows, on the loop, and freeing hundreds of megabytes
   * stalled it for up to 200 ms. The file keeps its largest size (bounded
   * by CATCH_UP_MAX_FRAMES) and is rewritten in place, which also spares the
   * kernel zeroing fresh pages; it is removed when the server stops. */
}

sqlite3 *store_db(Store *s) { return s->db; }

const char *store_path(const Store *s) { return s->path; }

/* Returns statement `id`, prepared and reset, with no bindings; NULL (logged)
 * if it cannot be prepared. */
static sqlite3_stmt *stmt(Store *s, StmtId id) {
  sqlite3_stmt *st = s->stmt[id];
  if (!st) {
    if (sqlite3_prepare_v3(s->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT,
                           &st, NULL) != SQLITE_OK) {
      log_error("store: cannot prepare statement %d: %s", (int)id,
                sqlite3_errmsg(s->db));
      return NULL;
    }
    s->stmt[id] = st;
  }
  return st;
}

/* Resets `st` for its next use and passes `rc` through. */
static int done(sqlite3_stmt *st, int rc) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc;
}

static int fail(Store *s, sqlite3_stmt *st, const char *what) {
  log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
  if (st) done(st, 0);
  return STORE_ERROR;
}

/* Binds a string, or NULL when `v` is NULL. */
static void bind_text(sqlite3_stmt *st, int i, const char *v) {
  if (v)
    sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null(st, i);
}

static int exec_simple(Store *s, StmtId id) {
  sqlite3_stmt *st = stmt(s, id);
  if (!st) return STORE_ERROR;
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, sql_text[id]);
  return done(st, 0);
}

int store_begin(Store *s) {
  if (!s->group) return exec_simple(s, SQL_BEGIN);
  if (!s->in_group) {
    if (exec_simple(s, SQL_BEGIN)) return STORE_ERROR;
    s->in_group = true;
    if (s->on_open) s->on_open(s->on_open_arg);
  }
  return exec_simple(s, SQL_SAVEPOINT);
}

int store_commit(Store *s) {
  int rc = exec_simple(s, s->in_group ? SQL_RELEASE : SQL_COMMIT);
  if (rc != 0) {
    store_rollback(s);
    return STORE_ERROR;
  }
  if (s->on_commit) s->on_commit();
  return 0;
}

void store_set_hooks(Store *s, void (*on_commit)(void),
                     void (*on_rollback)(void)) {
  s->on_commit = on_commit;
  s->on_rollback = on_rollback;
}

void store_rollback(Store *s) {
  if (s->on_rollback) s->on_rollback();
  if (s->in_group) {
    /* Undoes this caller's writes; the group's transaction goes on. */
    if (exec_simple(s, SQL_ROLLBACK_TO) == 0) exec_simple(s, SQL_RELEASE);
    return;
  }
  if (!sqlite3_get_autocommit(s->db)) exec_simple(s, SQL_ROLLBACK);
}

void store_group_enable(Store *s, void (*on_open)(void *), void *arg) {
  s->group = true;
  s->on_open = on_open;
  s->on_open_arg = arg;
}

int store_group_commit(Store *s) {
  if (!s->in_group) return 0;
  s->in_group = false;
  int rc = exec_simple(s, SQL_COMMIT);
  if (rc != 0 && !sqlite3_get_autocommit(s->db)) exec_simple(s, SQL_ROLLBACK);
  return rc;
}

static char *col_text(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? xstrdup((const char *)t) : NULL;
}

static void col_copy(sqlite3_stmt *st, int i, char out[32]) {
  const unsigned char *t = sqlite3_column_text(st, i);
  snprintf(out, 32, "%s", t ? (const char *)t : "");
}

void variant_clear(Variant *v) {
  free(v->id);
  free(v->product_id);
  free(v->sku);
  free(v->title);
  memset(v, 0, sizeof *v);
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

void variant_copy(Variant *dst, const Variant *src) {
  *dst = *src;
  dst->id = dup_or_null(src->id);
  dst->product_id = dup_or_null(src->product_id);
  dst->sku = dup_or_null(src->sku);
  dst->title = dup_or_null(src->title);
}

int store_variant_get(Store *s, const char *id, Variant *out) {
  sqlite3_stmt *st = stmt(s, SQL_VARIANT_GET);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return done(st, STORE_NOT_FOUND);
  if (rc != SQLITE_ROW) return fail(s, st, "variant get");
  out->id = col_text(st, 0);
  out->product_id = col_text(st, 1);
  out->sku = col_text(st, 2);
  out->title = col_text(st, 3);
  out->inventory_quantity = sqlite3_column_int64(st, 4);
  out->allow_backorder = sqlite3_column_int(st, 5) != 0;
  out->manage_inventory = sqlite3_column_int(st, 6) != 0;
  col_copy(st, 7, out->created_at);
  col_copy(st, 8, out->updated_at);
  out->has_levels = sqlite3_column_int(st, 9) != 0;
  return done(st, 0);
}

int store_variant_put(Store *s, const Variant *v) {
  sqlite3_stmt *st = stmt(s, SQL_VARIANT_PUT);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, v->id);
  bind_text(st, 2, v->product_id);
  bind_text(st, 3, v->sku);
  bind_text(st, 4, v->title);
  sqlite3_bind_int64(st, 5, v->inventory_quantity);
  sqlite3_bind_int(st, 6, v->allow_backorder);
  sqlite3_bind_int(st, 7, v->manage_inventory);
  bind_text(st, 8, v->created_at);
  bind_text(st, 9, v->updated_at);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "variant put");
  return done(st, 0);
}

int store_variant_set_quantity(Store *s, const char *id, long long quantity,
                               const char *updated_at) {
  sqlite3_stmt *st = stmt(s, SQL_VARIANT_QUANTITY);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, quantity);
  bind_text(st, 3, updated_at);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "variant quantity");
  return done(st, 0);
}

int store_subscription_set_event(Store *s, long long id, long long event_id) {
  sqlite3_stmt *st = stmt(s, SQL_SUB_SET_EVENT);
  if (!st) return STORE_ERROR;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, event_id);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "subscription event");
  return done(st, 0);
}

int store_subscription_add(Store *s, const char *variant_id,
                           const char *channel, const char *email,
                           char created_at[32], long long *inserted_id,
                           long long *event_id) {
  /* Not RETURNING: that costs an ephemeral table per statement. */
  sqlite3_stmt *st = stmt(s, SQL_EVENT_NEXT_ID);
  if (!st) return STORE_ERROR;
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "next event id");
  long long next_event = sqlite3_column_int64(st, 0);
  done(st, 0);
  st = stmt(s, SQL_SUB_INSERT);
  if (!st) return STORE_ERROR;
  char now[32];
  isotime_now(now);
  bind_text(st, 1, variant_id);
  bind_text(st, 2, channel ? channel : "");
  bind_text(st, 3, email);
  bind_text(st, 4, now);
  sqlite3_bind_int64(st, 5, next_event);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "subscription add");
  done(st, 0);
  *inserted_id =
      sqlite3_changes(s->db) > 0 ? sqlite3_last_insert_rowid(s->db) : 0;
  *event_id = *inserted_id ? next_event : 0;
  if (*inserted_id) {
    memcpy(created_at, now, 32);
    return 0;
  }
  st = stmt(s, SQL_SUB_CREATED);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, variant_id);
  bind_text(st, 2, channel ? channel : "");
  bind_text(st, 3, email);
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "subscription get");
  col_copy(st, 0, created_at);
  return done(st, 0);
}

static void bind_filter(sqlite3_stmt *st, const SubscriptionFilter *f) {
  bind_text(st, 1, f->variant_id);
  bind_text(st, 2, f->email);
  bind_text(st, 3, f->sales_channel_id);
}

/* Which form of a listing statement fits the filter: 0 any, 1 by email, 2
 * by variant (the email's index is the more selective). */
static int filter_form(const SubscriptionFilter *f) {
  return f->email ? 1 : f->variant_id ? 2 : 0;
}

int store_subscription_list(Store *s, const SubscriptionFilter *f,
                            json_t **rows, long long *count) {
  int form = filter_form(f);
  sqlite3_stmt *st =
      stmt(s, (f->notified ? SQL_HIST_COUNT : SQL_SUB_COUNT) + form);
  if (!st) return STORE_ERROR;
  bind_filter(st, f);
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "subscription count");
  *count = sqlite3_column_int64(st, 0);
  done(st, 0);

  st = stmt(s, (f->notified ? SQL_HIST_LIST : SQL_SUB_LIST) + form);
  if (!st) return STORE_ERROR;
  bind_filter(st, f);
  sqlite3_bind_int64(st, 4, f->limit);
  sqlite3_bind_int64(st, 5, f->offset);
  json_t *arr = json_array();
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *channel = (const char *)sqlite3_column_text(st, 1);
    json_t *row = json_pack(
        "{s:s, s:o, s:s, s:s}", "variant_id", sqlite3_column_text(st, 0),
        "sales_channel_id",
        channel && *channel ? json_string(channel) : json_null(), "email",
        sqlite3_column_text(st, 2), "created_at", sqlite3_column_text(st, 3));
    if (f->notified)
      json_object_set_new(
          row, "notified_at",
          json_string((const char *)sqlite3_column_text(st, 4)));
    json_array_append_new(arr, row);
  }
  if (rc != SQLITE_DONE) {
    json_decref(arr);
    return fail(s, st, "subscription list");
  }
  *rows = arr;
  return done(st, 0);
}

static int query_strings(Store *s, StmtId id, const char *a, const char *b,
                         json_t **out);
static int exec_texts(Store *s, StmtId id, const char *a, const char *b);

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

/* Scrubs `email` from the events plugins emitted; adds to *scrubbed. */
static int scrub_emitted(Store *s, const char *email, long long *scrubbed) {
  sqlite3_stmt *st = stmt(s, SQL_EVENT_EMITTED_WITH);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, email);
  /* Read them all before writing any: the walk must not see its writes. */
  json_t *found = json_array();
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    json_t *data =
        json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
    if (data)
      json_array_append_new(
          found,
          json_pack("{s:I, s:o}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                    "data", data));
  }
  if (rc != SQLITE_DONE) {
    json_decref(found);
    return fail(s, st, "emitted events");
  }
  done(st, 0);
  size_t i;
  json_t *e;
  rc = 0;
  json_array_foreach(found, i, e) {
    json_t *data = json_object_get(e, "data");
    if (!scrub_email(data, email)) continue;
    char *text = json_text(data);
    st = stmt(s, SQL_EVENT_SET_DATA);
    if (!st || !text) {
      free(text);
      rc = STORE_ERROR;
      break;
    }
    sqlite3_bind_int64(st, 1, json_integer_value(json_object_get(e, "id")));
    bind_text(st, 2, text);
    free(text);
    if (sqlite3_step(st) != SQLITE_DONE) {
      rc = fail(s, st, "scrub event");
      break;
    }
    done(st, 0);
    (*scrubbed)++;
  }
  json_decref(found);
  return rc;
}

int store_subscription_erase(Store *s, const char *email,
                             const char *variant_id, long long *deleted,
                             long long *scrubbed) {
  *deleted = 0;
  *scrubbed = 0;
  /* The outbox first: the restocked events of the variants this email was
   * notified of lose it from their emails; its subscribed events go. */
  json_t *variants = NULL;
  int rc = query_strings(s, SQL_HIST_VARIANTS, email, variant_id, &variants);
  size_t i;
  json_t *v;
  json_array_foreach(variants, i, v) {
    if (rc) break;
    rc = exec_texts(s, SQL_EVENT_SCRUB_RESTOCKED, json_string_value(v), email);
    *scrubbed += sqlite3_changes(s->db);
  }
  json_decref(variants);
  if (rc == 0) {
    sqlite3_stmt *st = stmt(s, SQL_EVENT_ERASE_SUBSCRIBED);
    if (!st) return STORE_ERROR;
    bind_text(st, 1, email);
    bind_text(st, 2, variant_id);
    if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "erase events");
    done(st, 0);
    *scrubbed += sqlite3_changes(s->db);
  }
  /* A plugin's events cannot be told apart by variant: only forgetting the
   * whole email scrubs them. */
  if (rc == 0 && !variant_id) rc = scrub_emitted(s, email, scrubbed);
  if (rc) return rc;
  StmtId ids[] = {SQL_SUB_ERASE, SQL_HIST_ERASE};
  for (size_t k = 0; k < 2; k++) {
    rc = exec_texts(s, ids[k], email, variant_id);
    if (rc) return rc;
    *deleted += sqlite3_changes(s->db);
  }
  return 0;
}

int store_meta_get(Store *s, const char *key, char **out) {
  sqlite3_stmt *st = stmt(s, SQL_META_GET);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, key);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return done(st, STORE_NOT_FOUND);
  if (rc != SQLITE_ROW) return fail(s, st, "meta get");
  *out = col_text(st, 0);
  return done(st, 0);
}

int store_meta_put(Store *s, const char *key, const char *value) {
  sqlite3_stmt *st = stmt(s, SQL_META_PUT);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, key);
  bind_text(st, 2, value);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "meta put");
  return done(st, 0);
}

/* Runs a statement that returns one optional integer (a count, a min()):
 * *value gets it, *any whether it was not NULL. */
static int query_int(Store *s, StmtId id, const char *text_arg,
                     long long *value, bool *any) {
  sqlite3_stmt *st = stmt(s, id);
  if (!st) return STORE_ERROR;
  if (text_arg) bind_text(st, 1, text_arg);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(s, st, sql_text[id]);
  bool has = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
  if (any) *any = has;
  if (value) *value = has ? sqlite3_column_int64(st, 0) : 0;
  return done(st, 0);
}

int store_subscription_count(Store *s, long long *count) {
  sqlite3_stmt *st = stmt(s, SQL_SUB_TOTAL);
  if (!st) return STORE_ERROR;
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "subscription count");
  *count = sqlite3_column_int64(st, 0);
  return done(st, 0);
}

int store_subscription_any(Store *s, const char *variant_id, bool *any) {
  return query_int(s, SQL_SUB_ANY, variant_id, NULL, any);
}

static int query_strings(Store *s, StmtId id, const char *a, const char *b,
                         json_t **out);

int store_subscription_scopes(Store *s, const char *variant_id,
                              json_t **channels) {
  return query_strings(s, SQL_SUB_SCOPES, variant_id, NULL, channels);
}

int store_subscription_take(Store *s, const char *variant_id,
                            const char *channel, long long limit,
                            const char *now, json_t **emails, bool *more) {
  sqlite3_stmt *st = stmt(s, SQL_SUB_TAKE);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, variant_id);
  bind_text(st, 2, channel);
  sqlite3_bind_int64(st, 3, limit);
  json_t *arr = json_array();
  long long last = -1;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    last = sqlite3_column_int64(st, 0);
    json_array_append_new(
        arr, json_string((const char *)sqlite3_column_text(st, 1)));
  }
  if (rc != SQLITE_DONE) {
    json_decref(arr);
    return fail(s, st, "subscription take");
  }
  done(st, 0);
  /* Subscriptions are taken oldest first, so they are exactly those of the
   * scope with an id up to the last one read. */
  if (last >= 0) {
    StmtId ids[] = {SQL_SUB_TO_HISTORY, SQL_SUB_DELETE_UPTO};
    for (size_t i = 0; i < 2; i++) {
      st = stmt(s, ids[i]);
      if (!st) {
        json_decref(arr);
        return STORE_ERROR;
      }
      bind_text(st, 1, variant_id);
      bind_text(st, 2, channel);
      sqlite3_bind_int64(st, 3, last);
      if (ids[i] == SQL_SUB_TO_HISTORY) bind_text(st, 4, now);
      if (sqlite3_step(st) != SQLITE_DONE) {
        json_decref(arr);
        return fail(s, st, "subscription take");
      }
      done(st, 0);
    }
  }
  st = stmt(s, SQL_SUB_SCOPE_ANY);
  if (!st) {
    json_decref(arr);
    return STORE_ERROR;
  }
  bind_text(st, 1, variant_id);
  bind_text(st, 2, channel);
  rc = sqlite3_step(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    json_decref(arr);
    return fail(s, st, "subscription take");
  }
  *more = rc == SQLITE_ROW;
  *emails = arr;
  return done(st, 0);
}

int store_subscription_remove(Store *s, const char *variant_id,
                              const char *channel, const char *email,
                              bool *removed) {
  sqlite3_stmt *st = stmt(s, SQL_SUB_REMOVE);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, variant_id);
  bind_text(st, 2, channel);
  bind_text(st, 3, email);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "unsubscribe");
  done(st, 0);
  *removed = sqlite3_changes(s->db) > 0;
  return 0;
}

int store_check_schedule(Store *s, const char *variant_id, long long due_at,
                         bool replace) {
  sqlite3_stmt *st = stmt(s, replace ? SQL_CHECK_REPLACE : SQL_CHECK_INSERT);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, variant_id);
  sqlite3_bind_int64(st, 2, due_at);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "check schedule");
  return done(st, 0);
}

int store_check_next(Store *s, long long *due_at, bool *any) {
  return query_int(s, SQL_CHECK_NEXT, NULL, due_at, any);
}

int store_check_count(Store *s, long long *count) {
  return query_int(s, SQL_CHECK_COUNT, NULL, count, NULL);
}

int store_check_due(Store *s, long long now, long long max, json_t **ids) {
  sqlite3_stmt *st = stmt(s, SQL_CHECK_DUE);
  if (!st) return STORE_ERROR;
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int64(st, 2, max);
  json_t *arr = json_array();
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    json_array_append_new(
        arr, json_string((const char *)sqlite3_column_text(st, 0)));
  if (rc != SQLITE_DONE) {
    json_decref(arr);
    return fail(s, st, "checks due");
  }
  *ids = arr;
  return done(st, 0);
}

int store_check_delete(Store *s, const char *variant_id) {
  sqlite3_stmt *st = stmt(s, SQL_CHECK_DELETE);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, variant_id);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "check delete");
  return done(st, 0);
}

int store_event_insert(Store *s, const char *name, const char *data,
                       const char *status, long long *id) {
  sqlite3_stmt *st = stmt(s, SQL_EVENT_INSERT);
  if (!st) return STORE_ERROR;
  char now[32];
  isotime_now(now);
  bind_text(st, 1, name);
  bind_text(st, 2, data);
  bind_text(st, 3, status);
  bind_text(st, 4, now);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "event insert");
  *id = sqlite3_last_insert_rowid(s->db);
  return done(st, 0);
}

int store_delivery_insert(Store *s, long long event_id, const char *handler,
                          long long max_attempts, long long next_at) {
  sqlite3_stmt *st = stmt(s, SQL_DELIVERY_INSERT);
  if (!st) return STORE_ERROR;
  char now[32];
  isotime_now(now);
  sqlite3_bind_int64(st, 1, event_id);
  bind_text(st, 2, handler);
  sqlite3_bind_int64(st, 3, max_attempts);
  sqlite3_bind_int64(st, 4, next_at);
  bind_text(st, 5, now);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "delivery insert");
  return done(st, 0);
}

void due_delivery_clear(DueDelivery *d) {
  free(d->handler);
  free(d->event);
  free(d->data);
  memset(d, 0, sizeof *d);
}

int store_delivery_due(Store *s, long long now, long long max,
                       DueDelivery **out, size_t *n) {
  sqlite3_stmt *st = stmt(s, SQL_DELIVERY_DUE);
  if (!st) return STORE_ERROR;
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int64(st, 2, max);
  DueDelivery *items = NULL;
  size_t count = 0, cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (count == cap) {
      cap = cap ? cap * 2 : 16;
      items = xrealloc(items, cap * sizeof *items);
    }
    DueDelivery *d = &items[count++];
    d->event_id = sqlite3_column_int64(st, 0);
    d->handler = col_text(st, 1);
    d->attempts = sqlite3_column_int64(st, 2);
    d->max_attempts = sqlite3_column_int64(st, 3);
    d->event = col_text(st, 4);
    d->data = col_text(st, 5);
  }
  if (rc != SQLITE_DONE) {
    for (size_t i = 0; i < count; i++) due_delivery_clear(&items[i]);
    free(items);
    return fail(s, st, "deliveries due");
  }
  *out = items;
  *n = count;
  return done(st, 0);
}

int store_delivery_lease(Store *s, long long event_id, const char *handler,
                         long long next_at) {
  sqlite3_stmt *st = stmt(s, SQL_DELIVERY_LEASE);
  if (!st) return STORE_ERROR;
  sqlite3_bind_int64(st, 1, event_id);
  bind_text(st, 2, handler);
  sqlite3_bind_int64(st, 3, next_at);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "delivery lease");
  return done(st, 0);
}

int store_delivery_update(Store *s, long long event_id, const char *handler,
                          const char *status, long long attempts,
                          long long next_at, const char *error) {
  sqlite3_stmt *st = stmt(s, SQL_DELIVERY_UPDATE);
  if (!st) return STORE_ERROR;
  char now[32];
  isotime_now(now);
  sqlite3_bind_int64(st, 1, event_id);
  bind_text(st, 2, handler);
  bind_text(st, 3, status);
  sqlite3_bind_int64(st, 4, attempts);
  sqlite3_bind_int64(st, 5, next_at);
  bind_text(st, 6, error);
  bind_text(st, 7, now);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "delivery update");
  return done(st, 0);
}

int store_event_refresh(Store *s, long long event_id, const char *error) {
  sqlite3_stmt *st = stmt(s, SQL_EVENT_REFRESH);
  if (!st) return STORE_ERROR;
  sqlite3_bind_int64(st, 1, event_id);
  bind_text(st, 2, error);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "event refresh");
  return done(st, 0);
}

int store_delivery_next(Store *s, long long *next_at, bool *any) {
  return query_int(s, SQL_DELIVERY_NEXT, NULL, next_at, any);
}

int store_delivery_pending_count(Store *s, long long *count) {
  return query_int(s, SQL_DELIVERY_PENDING, NULL, count, NULL);
}

/* The deliveries of one event as a new JSON array. */
static json_t *event_deliveries(Store *s, long long id) {
  sqlite3_stmt *st = stmt(s, SQL_EVENT_DELIVERIES);
  if (!st) return NULL;
  sqlite3_bind_int64(st, 1, id);
  json_t *arr = json_array();
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *err = (const char *)sqlite3_column_text(st, 4);
    json_array_append_new(
        arr, json_pack("{s:s, s:s, s:I, s:I, s:o, s:s}", "handler",
                       sqlite3_column_text(st, 0), "status",
                       sqlite3_column_text(st, 1), "attempts",
                       (json_int_t)sqlite3_column_int64(st, 2), "max_attempts",
                       (json_int_t)sqlite3_column_int64(st, 3), "last_error",
                       err ? json_string(err) : json_null(), "updated_at",
                       sqlite3_column_text(st, 5)));
  }
  if (rc != SQLITE_DONE) {
    json_decref(arr);
    fail(s, st, "event deliveries");
    return NULL;
  }
  done(st, 0);
  return arr;
}

int store_event_list(Store *s, const char *name, const char *status,
                     long long limit, long long offset, json_t **rows,
                     long long *count) {
  /* The statement whose index fits the filters: open events (few), a name
   * other than subscribed, or else a walk of the table. */
  StmtId count_id = SQL_EVENT_COUNT, list_id = SQL_EVENT_LIST;
  if (status && strcmp(status, "delivered") != 0) {
    count_id = SQL_EVENT_COUNT_OPEN;
    list_id = SQL_EVENT_LIST_OPEN;
  } else if (name && strcmp(name, SUBSCRIBED_NAME) != 0) {
    count_id = SQL_EVENT_COUNT_NAMED;
    list_id = SQL_EVENT_LIST_NAMED;
  }
  sqlite3_stmt *st = stmt(s, count_id);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, name);
  bind_text(st, 2, status);
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "event count");
  *count = sqlite3_column_int64(st, 0);
  done(st, 0);

  st = stmt(s, list_id);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, name);
  bind_text(st, 2, status);
  sqlite3_bind_int64(st, 3, limit);
  sqlite3_bind_int64(st, 4, offset);
  json_t *arr = json_array();
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *data = (const char *)sqlite3_column_text(st, 2);
    json_t *jdata = json_loads(data ? data : "null", JSON_DECODE_ANY, NULL);
    const char *err = (const char *)sqlite3_column_text(st, 5);
    json_array_append_new(
        arr, json_pack("{s:I, s:s, s:o, s:s, s:I, s:o, s:s}", "id",
                       (json_int_t)sqlite3_column_int64(st, 0), "name",
                       sqlite3_column_text(st, 1), "data",
                       jdata ? jdata : json_null(), "status",
                       sqlite3_column_text(st, 3), "attempts",
                       (json_int_t)sqlite3_column_int64(st, 4), "last_error",
                       err ? json_string(err) : json_null(), "created_at",
                       sqlite3_column_text(st, 6)));
  }
  if (rc != SQLITE_DONE) {
    json_decref(arr);
    return fail(s, st, "event list");
  }
  done(st, 0);
  /* Each event's deliveries, once the listing statement is reset. */
  size_t i;
  json_t *row;
  json_array_foreach(arr, i, row) {
    json_t *d = event_deliveries(
        s, (long long)json_integer_value(json_object_get(row, "id")));
    if (!d) {
      json_decref(arr);
      return STORE_ERROR;
    }
    json_object_set_new(row, "deliveries", d);
  }
  *rows = arr;
  return 0;
}

int store_event_retry(Store *s, long long id, long long now,
                      long long *requeued) {
  sqlite3_stmt *st = stmt(s, SQL_EVENT_EXISTS);
  if (!st) return STORE_ERROR;
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return done(st, STORE_NOT_FOUND);
  if (rc != SQLITE_ROW) return fail(s, st, "event retry");
  done(st, 0);
  st = stmt(s, SQL_EVENT_RETRY);
  if (!st) return STORE_ERROR;
  char text[32];
  isotime_now(text);
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, now);
  bind_text(st, 3, text);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "event retry");
  done(st, 0);
  *requeued = sqlite3_changes(s->db);
  return store_event_refresh(s, id, NULL);
}

/* Runs a statement whose rows are one text column, into a new JSON array;
 * `a` and `b` are bound to ?1 and ?2 when not NULL. */
static int query_strings(Store *s, StmtId id, const char *a, const char *b,
                         json_t **out) {
  sqlite3_stmt *st = stmt(s, id);
  if (!st) return STORE_ERROR;
  if (a) bind_text(st, 1, a);
  if (b) bind_text(st, 2, b);
  json_t *arr = json_array();
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    json_array_append_new(
        arr, json_string((const char *)sqlite3_column_text(st, 0)));
  if (rc != SQLITE_DONE) {
    json_decref(arr);
    return fail(s, st, sql_text[id]);
  }
  *out = arr;
  return done(st, 0);
}

/* Runs a statement that changes rows, with up to two text parameters. */
static int exec_texts(Store *s, StmtId id, const char *a, const char *b) {
  sqlite3_stmt *st = stmt(s, id);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, a);
  if (b) bind_text(st, 2, b);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, sql_text[id]);
  return done(st, 0);
}

/* Reads an (id, name, created_at, updated_at) row as JSON. */
static int named_row(Store *s, StmtId id, const char *key, json_t **out) {
  sqlite3_stmt *st = stmt(s, id);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, key);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return done(st, STORE_NOT_FOUND);
  if (rc != SQLITE_ROW) return fail(s, st, sql_text[id]);
  const char *name = (const char *)sqlite3_column_text(st, 1);
  *out = json_pack("{s:s, s:o, s:s, s:s}", "id", sqlite3_column_text(st, 0),
                   "name", name ? json_string(name) : json_null(), "created_at",
                   sqlite3_column_text(st, 2), "updated_at",
                   sqlite3_column_text(st, 3));
  return done(st, 0);
}

/* Upserts an (id, name) row: `name` NULL keeps the stored one. */
static int upsert_named(Store *s, StmtId id, const char *key,
                        const char *name) {
  sqlite3_stmt *st = stmt(s, id);
  if (!st) return STORE_ERROR;
  char now[32];
  isotime_now(now);
  bind_text(st, 1, key);
  bind_text(st, 2, name);
  bind_text(st, 3, now);
  sqlite3_bind_int(st, 4, name != NULL);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, sql_text[id]);
  return done(st, 0);
}

int store_location_put(Store *s, const char *id, const char *name,
                       json_t **out) {
  int rc = upsert_named(s, SQL_LOCATION_UPSERT, id, name);
  return rc ? rc : named_row(s, SQL_LOCATION_GET, id, out);
}

int store_location_exists(Store *s, const char *id, bool *exists) {
  json_t *row = NULL;
  int rc = named_row(s, SQL_LOCATION_GET, id, &row);
  *exists = rc == 0;
  json_decref(row);
  return rc == STORE_NOT_FOUND ? 0 : rc;
}

int store_channel_exists(Store *s, const char *id, bool *exists) {
  json_t *row = NULL;
  int rc = named_row(s, SQL_CHANNEL_GET, id, &row);
  *exists = rc == 0;
  json_decref(row);
  return rc == STORE_NOT_FOUND ? 0 : rc;
}

int store_channel_put(Store *s, const char *id, const char *name,
                      json_t *location_ids, json_t **out, json_t **added) {
  json_t *before = NULL;
  *added = json_array();
  int rc = upsert_named(s, SQL_CHANNEL_UPSERT, id, name);
  if (rc == 0 && location_ids) {
    rc = query_strings(s, SQL_CHANNEL_LOCATIONS, id, NULL, &before);
    if (rc == 0) rc = exec_texts(s, SQL_CHANNEL_LOC_CLEAR, id, NULL);
    size_t i, j;
    json_t *loc, *old;
    json_array_foreach(location_ids, i, loc) {
      if (rc) break;
      rc = exec_texts(s, SQL_CHANNEL_LOC_ADD, id, json_string_value(loc));
      bool known = false;
      json_array_foreach(before, j, old) {
        if (json_equal(old, loc)) known = true;
      }
      if (!known) json_array_append(*added, loc);
    }
  }
  json_decref(before);
  json_t *locations = NULL;
  if (rc == 0) rc = named_row(s, SQL_CHANNEL_GET, id, out);
  if (rc == 0)
    rc = query_strings(s, SQL_CHANNEL_LOCATIONS, id, NULL, &locations);
  if (rc == 0) json_object_set_new(*out, "location_ids", locations);
  return rc;
}

int store_channel_quantity(Store *s, const char *variant_id,
                           const char *channel, long long *quantity) {
  sqlite3_stmt *st = stmt(s, SQL_CHANNEL_QUANTITY);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, variant_id);
  bind_text(st, 2, channel);
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "channel quantity");
  *quantity = sqlite3_column_int64(st, 0);
  return done(st, 0);
}

int store_level_get(Store *s, const char *variant_id, const char *location_id,
                    long long *stocked, long long *reserved) {
  sqlite3_stmt *st = stmt(s, SQL_LEVEL_GET);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, variant_id);
  bind_text(st, 2, location_id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return done(st, STORE_NOT_FOUND);
  if (rc != SQLITE_ROW) return fail(s, st, "level get");
  *stocked = sqlite3_column_int64(st, 0);
  *reserved = sqlite3_column_int64(st, 1);
  return done(st, 0);
}

int store_level_put(Store *s, const char *variant_id, const char *location_id,
                    long long stocked, long long reserved, long long *before,
                    json_t **out) {
  long long old_stocked = 0, old_reserved = 0;
  int rc =
      store_level_get(s, variant_id, location_id, &old_stocked, &old_reserved);
  if (rc != 0 && rc != STORE_NOT_FOUND) return rc;
  *before = old_stocked - old_reserved;
  sqlite3_stmt *st = stmt(s, SQL_LEVEL_UPSERT);
  if (!st) return STORE_ERROR;
  char now[32];
  isotime_now(now);
  bind_text(st, 1, variant_id);
  bind_text(st, 2, location_id);
  sqlite3_bind_int64(st, 3, stocked);
  sqlite3_bind_int64(st, 4, reserved);
  bind_text(st, 5, now);
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "level put");
  if (out)
    *out = json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "variant_id",
        sqlite3_column_text(st, 0), "location_id", sqlite3_column_text(st, 1),
        "stocked_quantity", (json_int_t)sqlite3_column_int64(st, 2),
        "reserved_quantity", (json_int_t)sqlite3_column_int64(st, 3),
        "available_quantity",
        (json_int_t)(sqlite3_column_int64(st, 2) - sqlite3_column_int64(st, 3)),
        "created_at", sqlite3_column_text(st, 4), "updated_at",
        sqlite3_column_text(st, 5));
  /* RETURNING rows are all produced by the first step; finish it. */
  while (sqlite3_step(st) == SQLITE_ROW) {
  }
  return done(st, 0);
}

int store_variant_sync_levels(Store *s, const char *variant_id,
                              long long *sum) {
  sqlite3_stmt *st = stmt(s, SQL_LEVEL_SUM);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, variant_id);
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "level sum");
  *sum = sqlite3_column_int64(st, 0);
  done(st, 0);
  st = stmt(s, SQL_VARIANT_SET_QTY);
  if (!st) return STORE_ERROR;
  char now[32];
  isotime_now(now);
  bind_text(st, 1, variant_id);
  sqlite3_bind_int64(st, 2, *sum);
  bind_text(st, 3, now);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "variant quantity");
  return done(st, 0);
}

int store_key_put(Store *s, const char *id, json_t *channel_ids, json_t **out) {
  sqlite3_stmt *st = stmt(s, SQL_KEY_UPSERT);
  if (!st) return STORE_ERROR;
  char now[32];
  isotime_now(now);
  bind_text(st, 1, id);
  bind_text(st, 2, now);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "key put");
  done(st, 0);
  int rc = channel_ids ? exec_texts(s, SQL_KEY_CLEAR, id, NULL) : 0;
  size_t i;
  json_t *ch;
  json_array_foreach(channel_ids, i, ch) {
    if (rc) break;
    rc = exec_texts(s, SQL_KEY_ADD, id, json_string_value(ch));
  }
  json_t *channels = NULL;
  if (rc == 0) rc = query_strings(s, SQL_KEY_CHANNELS, id, NULL, &channels);
  if (rc == 0)
    *out = json_pack("{s:s, s:o}", "id", id, "sales_channel_ids", channels);
  return rc;
}

int store_key_channels(Store *s, const char *id, json_t **channels) {
  sqlite3_stmt *st = stmt(s, SQL_KEY_GET);
  if (!st) return STORE_ERROR;
  bind_text(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return done(st, STORE_NOT_FOUND);
  if (rc != SQLITE_ROW) return fail(s, st, "key get");
  done(st, 0);
  return query_strings(s, SQL_KEY_CHANNELS, id, NULL, channels);
}

int store_variants_to_check(Store *s, const char *location, const char *channel,
                            json_t **variant_ids) {
  return query_strings(s, SQL_VARIANTS_TO_CHECK, location, channel,
                       variant_ids);
}

int store_event_prune(Store *s, long long after_id, const char *cutoff,
                      long long max, long long *last_id, long long *deleted,
                      bool *reached) {
  sqlite3_stmt *st = stmt(s, SQL_EVENT_SCAN);
  if (!st) return STORE_ERROR;
  sqlite3_bind_int64(st, 1, after_id);
  sqlite3_bind_int64(st, 2, max);
  long long ids[512];
  size_t n = 0;
  int rc;
  *last_id = after_id;
  *reached = false;
  *deleted = 0;
  /* Events are in created order: the walk stops at the first one young
   * enough to keep; older ones not delivered (dead, pending) are kept. */
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *created = (const char *)sqlite3_column_text(st, 2);
    if (!created || strcmp(created, cutoff) >= 0) {
      *reached = true;
      break;
    }
    *last_id = sqlite3_column_int64(st, 0);
    const char *status = (const char *)sqlite3_column_text(st, 1);
    if (status && strcmp(status, "delivered") == 0 &&
        n < sizeof ids / sizeof ids[0])
      ids[n++] = *last_id;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(s, st, "event scan");
  if (rc == SQLITE_DONE && *last_id == after_id) *reached = true;
  done(st, 0);
  st = stmt(s, SQL_EVENT_DELETE);
  if (!st) return STORE_ERROR;
  for (size_t i = 0; i < n; i++) {
    sqlite3_bind_int64(st, 1, ids[i]);
    if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "event delete");
    done(st, 0);
    *deleted += sqlite3_changes(s->db);
  }
  return 0;
}
