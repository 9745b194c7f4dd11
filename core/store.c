#include "store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "xmalloc.h"

/* Every statement the server runs. They are prepared on first use, because
 * the tables they name exist only once the migrations have run. */
typedef enum {
  SQL_BEGIN,
  SQL_COMMIT,
  SQL_ROLLBACK,
  SQL_VARIANT_GET,
  SQL_VARIANT_PUT,
  SQL_SUB_INSERT,
  SQL_SUB_CREATED,
  SQL_SUB_LIST,
  SQL_SUB_COUNT,
  SQL_HIST_LIST,
  SQL_HIST_COUNT,
  SQL_SUB_ERASE,
  SQL_HIST_ERASE,
  SQL_META_GET,
  SQL_META_PUT,
  SQL_COUNT_
} StmtId;

/* The filter of the subscription listings: each parameter either is NULL
 * (matches anything) or must equal its column. */
#define SUB_FILTER                                          \
  " WHERE (?1 IS NULL OR variant_id = ?1)"                  \
  " AND (?2 IS NULL OR email = ?2)"                         \
  " AND (?3 IS NULL OR sales_channel_id = ?3)"

static const char *const sql_text[SQL_COUNT_] = {
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_VARIANT_GET] =
        "SELECT id, product_id, sku, title, inventory_quantity,"
        " allow_backorder, manage_inventory, created_at, updated_at"
        " FROM variants WHERE id = ?1",
    [SQL_VARIANT_PUT] =
        "INSERT OR REPLACE INTO variants (id, product_id, sku, title,"
        " inventory_quantity, allow_backorder, manage_inventory, created_at,"
        " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [SQL_SUB_INSERT] =
        "INSERT OR IGNORE INTO restock_subscriptions"
        " (variant_id, sales_channel_id, email, created_at)"
        " VALUES (?1, ?2, ?3, ?4)",
    [SQL_SUB_CREATED] =
        "SELECT created_at FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 AND email = ?3",
    [SQL_SUB_LIST] =
        "SELECT variant_id, sales_channel_id, email, created_at, NULL"
        " FROM restock_subscriptions" SUB_FILTER
        " ORDER BY id LIMIT ?4 OFFSET ?5",
    [SQL_SUB_COUNT] = "SELECT count(*) FROM restock_subscriptions" SUB_FILTER,
    [SQL_HIST_LIST] =
        "SELECT variant_id, sales_channel_id, email, created_at, notified_at"
        " FROM restock_history" SUB_FILTER " ORDER BY id LIMIT ?4 OFFSET ?5",
    [SQL_HIST_COUNT] = "SELECT count(*) FROM restock_history" SUB_FILTER,
    [SQL_SUB_ERASE] =
        "DELETE FROM restock_subscriptions"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    [SQL_HIST_ERASE] =
        "DELETE FROM restock_history"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    [SQL_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [SQL_META_PUT] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
};

struct Store {
  sqlite3 *db;
  sqlite3_stmt *stmt[SQL_COUNT_];
};

int store_open(const char *path, Store **out, char **err) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_NOMUTEX,
                           NULL);
  if (rc != SQLITE_OK) {
    *err = xasprintf("cannot open database %s: %s", path,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return -1;
  }
  /* WAL lets readers (a second process running `migrations status`, say) work
   * beside the server. synchronous=NORMAL in WAL mode keeps every committed
   * transaction across a crash or kill of the process; only an OS crash or a
   * power cut can lose the last ones. */
  const char *setup =
      "PRAGMA journal_mode=WAL;"
      "PRAGMA synchronous=NORMAL;"
      "PRAGMA foreign_keys=ON;";
  char *msg = NULL;
  sqlite3_busy_timeout(db, 2000);
  if (sqlite3_exec(db, setup, NULL, NULL, &msg) != SQLITE_OK) {
    *err = xasprintf("cannot set up database %s: %s", path,
                     msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_close(db);
    return -1;
  }
  Store *s = xcalloc(1, sizeof *s);
  s->db = db;
  *out = s;
  return 0;
}

void store_close(Store *s) {
  if (!s) return;
  for (int i = 0; i < SQL_COUNT_; i++) sqlite3_finalize(s->stmt[i]);
  sqlite3_close(s->db);
  free(s);
}

sqlite3 *store_db(Store *s) { return s->db; }

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

int store_begin(Store *s) { return exec_simple(s, SQL_BEGIN); }
int store_commit(Store *s) {
  int rc = exec_simple(s, SQL_COMMIT);
  if (rc != 0) store_rollback(s);
  return rc;
}
void store_rollback(Store *s) {
  if (!sqlite3_get_autocommit(s->db)) exec_simple(s, SQL_ROLLBACK);
}

void store_now(char out[32]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
           (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100, tm.tm_mday % 100,
           tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100,
           (int)(ts.tv_nsec / 1000000) % 1000);
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

int store_subscription_add(Store *s, const char *variant_id,
                           const char *channel, const char *email,
                           char created_at[32], bool *inserted) {
  sqlite3_stmt *st = stmt(s, SQL_SUB_INSERT);
  if (!st) return STORE_ERROR;
  char now[32];
  store_now(now);
  bind_text(st, 1, variant_id);
  bind_text(st, 2, channel ? channel : "");
  bind_text(st, 3, email);
  bind_text(st, 4, now);
  if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "subscription add");
  done(st, 0);
  *inserted = sqlite3_changes(s->db) > 0;
  if (*inserted) {
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

int store_subscription_list(Store *s, const SubscriptionFilter *f,
                            json_t **rows, long long *count) {
  sqlite3_stmt *st = stmt(s, f->notified ? SQL_HIST_COUNT : SQL_SUB_COUNT);
  if (!st) return STORE_ERROR;
  bind_filter(st, f);
  if (sqlite3_step(st) != SQLITE_ROW) return fail(s, st, "subscription count");
  *count = sqlite3_column_int64(st, 0);
  done(st, 0);

  st = stmt(s, f->notified ? SQL_HIST_LIST : SQL_SUB_LIST);
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
      json_object_set_new(row, "notified_at",
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

int store_subscription_erase(Store *s, const char *email,
                             const char *variant_id, long long *deleted) {
  *deleted = 0;
  StmtId ids[] = {SQL_SUB_ERASE, SQL_HIST_ERASE};
  for (size_t i = 0; i < 2; i++) {
    sqlite3_stmt *st = stmt(s, ids[i]);
    if (!st) return STORE_ERROR;
    bind_text(st, 1, email);
    bind_text(st, 2, variant_id);
    if (sqlite3_step(st) != SQLITE_DONE) return fail(s, st, "erase");
    done(st, 0);
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
