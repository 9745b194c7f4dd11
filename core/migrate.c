#include "migrate.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

typedef enum { MIGRATE_RUN, MIGRATE_STATUS, MIGRATE_PENDING } MigrateMode;

typedef struct {
  MigrateMode mode;
  FILE *out;
  size_t pending;
  char *err;
} MigrateJob;

/* Runs on the store's connection, without a transaction around it: each
 * migration is a transaction of its own. */
static int migrate_fn(StoreTx *tx, void *arg) {
  MigrateJob *j = arg;
  size_t n = 0;
  const Migration *m = store_migrations(tx, &n);
  char(*applied)[ISOTIME_LEN] = xcalloc(n ? n : 1, ISOTIME_LEN);
  int rc = 0;
  bool locked = false;
  if (j->mode == MIGRATE_RUN) {
    rc = store_migrations_lock(tx, true, &j->err);
    locked = rc == 0;
  }
  if (rc == 0) rc = store_migrations_applied(tx, applied, &j->err);
  size_t done = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (applied[i][0]) {
      if (j->mode == MIGRATE_STATUS)
        fprintf(j->out, "applied %s %s\n", m[i].name, applied[i]);
      continue;
    }
    j->pending++;
    if (j->mode == MIGRATE_STATUS) fprintf(j->out, "pending %s\n", m[i].name);
    if (j->mode != MIGRATE_RUN) continue;
    rc = store_migration_apply(tx, &m[i], &j->err);
    if (rc == 0) {
      fprintf(j->out, "applied %s\n", m[i].name);
      done++;
    }
  }
  if (rc == 0 && j->mode == MIGRATE_RUN && done == 0)
    fprintf(j->out, "no pending migrations\n");
  if (locked) {
    char *unlock_err = NULL;
    if (store_migrations_lock(tx, false, &unlock_err) && rc == 0) {
      rc = RESTOCK_ESTORE;
      j->err = unlock_err;
    } else {
      free(unlock_err);
    }
  }
  free(applied);
  return rc;
}

static int migrate(Store *s, MigrateMode mode, FILE *out, size_t *pending,
                   char **err) {
  MigrateJob j = {.mode = mode, .out = out};
  int rc = store_run_bare(s, migrate_fn, &j);
  if (pending) *pending = j.pending;
  if (rc && err)
    *err = j.err ? j.err : xstrdup("the migrations failed");
  else
    free(j.err);
  return rc;
}

int migrate_run(Store *s, FILE *out, char **err) {
  return migrate(s, MIGRATE_RUN, out, NULL, err);
}

int migrate_status(Store *s, FILE *out, char **err) {
  return migrate(s, MIGRATE_STATUS, out, NULL, err);
}

int migrate_pending(Store *s, size_t *pending, char **err) {
  return migrate(s, MIGRATE_PENDING, NULL, pending, err);
}
