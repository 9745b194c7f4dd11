#include "migrate.h"

#include <stdlib.h>
#include <string.h>

#include "isotime.h"
#include "xmalloc.h"

static const char *const create_table =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)";

/* Fills `applied_at[i]` with the time migration i was applied, or "" if it
 * was not. Returns 0 or -1 with *err. */
static int read_applied(Store *s, char (*applied_at)[32], char **err) {
  sqlite3 *db = store_db(s);
  char *msg = NULL;
  if (sqlite3_exec(db, create_table, NULL, NULL, &msg) != SQLITE_OK) {
    *err = xasprintf("cannot create schema_migrations: %s", msg);
    sqlite3_free(msg);
    return -1;
  }
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT applied_at FROM schema_migrations"
                         " WHERE name = ?1",
                         -1, &st, NULL) != SQLITE_OK) {
    *err = xasprintf("cannot read schema_migrations: %s", sqlite3_errmsg(db));
    return -1;
  }
  for (size_t i = 0; i < migrate_embedded_count; i++) {
    sqlite3_bind_text(st, 1, migrate_embedded[i].name, -1, SQLITE_STATIC);
    applied_at[i][0] = '\0';
    if (sqlite3_step(st) == SQLITE_ROW)
      snprintf(applied_at[i], 32, "%s", sqlite3_column_text(st, 0));
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  return 0;
}

static int apply(Store *s, const Migration *m, char **err) {
  sqlite3 *db = store_db(s);
  char *msg = NULL;
  if (store_begin(s) != 0) {
    *err = xasprintf("%s: cannot begin: %s", m->name, sqlite3_errmsg(db));
    return -1;
  }
  /* The migration's SQL is our own, compiled in; it has no parameters. */
  if (sqlite3_exec(db, m->sql, NULL, NULL, &msg) != SQLITE_OK) {
    *err = xasprintf("%s: %s", m->name, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    store_rollback(s);
    return -1;
  }
  sqlite3_stmt *st = NULL;
  char now[32];
  isotime_now(now);
  int rc = sqlite3_prepare_v2(db,
                              "INSERT INTO schema_migrations (name, applied_at)"
                              " VALUES (?1, ?2)",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, m->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK || store_commit(s) != 0) {
    *err = xasprintf("%s: cannot record: %s", m->name, sqlite3_errmsg(db));
    store_rollback(s);
    return -1;
  }
  return 0;
}

int migrate_run(Store *s, FILE *out, char **err) {
  char(*applied)[32] = xcalloc(migrate_embedded_count, 32);
  int rc = read_applied(s, applied, err);
  size_t done = 0;
  for (size_t i = 0; rc == 0 && i < migrate_embedded_count; i++) {
    if (applied[i][0]) continue;
    rc = apply(s, &migrate_embedded[i], err);
    if (rc == 0) {
      fprintf(out, "applied %s\n", migrate_embedded[i].name);
      done++;
    }
  }
  if (rc == 0 && done == 0) fprintf(out, "no pending migrations\n");
  free(applied);
  return rc;
}

int migrate_status(Store *s, FILE *out, char **err) {
  char(*applied)[32] = xcalloc(migrate_embedded_count, 32);
  int rc = read_applied(s, applied, err);
  for (size_t i = 0; rc == 0 && i < migrate_embedded_count; i++) {
    if (applied[i][0])
      fprintf(out, "applied %s %s\n", migrate_embedded[i].name, applied[i]);
    else
      fprintf(out, "pending %s\n", migrate_embedded[i].name);
  }
  free(applied);
  return rc;
}

int migrate_pending(Store *s, size_t *pending, char **err) {
  char(*applied)[32] = xcalloc(migrate_embedded_count, 32);
  int rc = read_applied(s, applied, err);
  *pending = 0;
  for (size_t i = 0; rc == 0 && i < migrate_embedded_count; i++)
    if (!applied[i][0]) (*pending)++;
  free(applied);
  return rc;
}
