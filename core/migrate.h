/* Schema migrations: the numbered SQL files of migrations/BACKEND/, compiled
 * into the binary (see embed_migrations.sh), applied in order, each in its
 * own transaction, and recorded in the table schema_migrations. */
#ifndef RESTOCKD_MIGRATE_H
#define RESTOCKD_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

#include "store.h"

/* Applies every pending migration, printing "applied NAME" to `out` for each
 * (or "no pending migrations"). Stops at the first failure, which rolls back
 * that migration alone. Returns 0, or a negative code with a message in
 * *err (free it). */
int migrate_run(Store *s, FILE *out, char **err);
/* Prints each migration as "applied NAME AT" or "pending NAME". */
int migrate_status(Store *s, FILE *out, char **err);
/* Sets *pending to the number of migrations not yet applied. */
int migrate_pending(Store *s, size_t *pending, char **err);

#endif
