/* What a storage backend gives store.c: connections, prepared statements
 * with positional parameters, and its SQL for each statement of
 * store_sql.h. store.c holds the operations (backend-neutral C over these
 * calls) and the threads; a backend file (store_sqlite.c, ...) holds its
 * connection code and its SQL, as Redis keeps ae_epoll.c behind ae.c.
 *
 * Connections and statements are used by one thread at a time. */
#ifndef RESTOCKD_STORE_DRIVER_H
#define RESTOCKD_STORE_DRIVER_H

#include <stdbool.h>

#include "store.h"
#include "store_sql.h"

typedef struct StoreConn StoreConn;
typedef struct StoreStmt StoreStmt;

typedef enum {
  CONN_WRITER, /* the server's writer */
  CONN_READER, /* read-only, for read units */
  CONN_CLI,    /* the CLI's only connection: writes, waits as long as needed */
} ConnRole;

typedef struct StoreDriver {
  const char *name;
  /* The statement texts, indexed by StmtId; every entry set. */
  const char *const *sql;
  /* The migrations, in order, ended by a {NULL, NULL} entry. */
  const Migration *migrations;

  /* Opens a connection. Returns 0, or a negative code with *err. */
  int (*connect)(const char *uri, ConnRole role, StoreConn **out, char **err);
  void (*disconnect)(StoreConn *c);
  /* Runs a script of statements without parameters (a migration). */
  int (*exec)(StoreConn *c, const char *script, char **err);

  StoreStmt *(*prepare)(StoreConn *c, const char *sql, char **err);
  void (*finalize)(StoreStmt *st);
  /* Parameters are numbered from 1. Text is copied. */
  void (*bind_null)(StoreStmt *st, int i);
  void (*bind_int)(StoreStmt *st, int i, long long v);
  void (*bind_double)(StoreStmt *st, int i, double v);
  void (*bind_text)(StoreStmt *st, int i, const char *v);
  /* Optional: starts the bound statement without waiting for its answer,
   * which the next step reads, so that the database runs it while the
   * caller does other work. Nothing else may run on the connection until
   * that step (or a reset, which reads the answer and drops it). Returns
   * 0, 1 when the statement was not started (the step runs it as usual),
   * or RESTOCK_ESTORE. */
  int (*send)(StoreStmt *st);
  /* 1: a row is ready; 0: done; RESTOCK_ESTORE: failed (see errmsg). */
  int (*step)(StoreStmt *st);
  /* Makes the statement ready to run again, bindings cleared. */
  void (*reset)(StoreStmt *st);
  bool (*column_null)(StoreStmt *st, int i);
  long long (*column_int)(StoreStmt *st, int i);
  double (*column_double)(StoreStmt *st, int i);
  /* NULL for SQL NULL; valid until the next step or reset. */
  const char *(*column_text)(StoreStmt *st, int i);
  /* Rows changed by the statement that last finished on `c`. */
  long long (*changes)(StoreConn *c, StoreStmt *st);
  /* Optional: rows changed on `c` since it opened, triggers' included;
   * a statement that failed adds none. A backend whose failed statement
   * leaves its transaction usable (SQLite) sets it: the writer then runs a
   * group's replayable units without a savepoint each (run_group). */
  long long (*total_changes)(StoreConn *c);
  const char *(*errmsg)(StoreConn *c);
  /* True while `c` has a transaction open (a failed statement may have
   * rolled it back on its own, as SQLite does when the disk is full). */
  bool (*in_transaction)(StoreConn *c);

  /* Server life (optional): takes what a running server needs beside its
   * connections (the single-process lock, a checkpoint thread), before the
   * writer is connected. Returns 0, or RESTOCK_EBUSY or another code with
   * *err. */
  int (*server_open)(const char *uri, void **state, char **err);
  int (*server_start)(void *state, char **err);
  void (*server_stop)(void *state);
  void (*server_close)(void *state);
  /* On the writer, before a group's BEGIN: the durability to commit with. */
  void (*set_durability)(StoreConn *c, Durability d);
  /* On the writer, after each committed group; *wal_bytes (the writer's
   * own) keeps the largest size the log reached. */
  void (*after_commit)(StoreConn *c, void *state,
                       unsigned long long *wal_bytes);
  /* True when the uri names a database readers cannot share (SQLite's
   * :memory:): reads then run on the writer. */
  bool (*private_uri)(const char *uri);

  /* ---- several servers on one database (PostgreSQL; all optional) ---- */

  /* Several servers may write the database at once. store.c then reads
   * the rows a write will change with a lock (SQL_VARIANT_LOCK,
   * SQL_EVENT_LOCK), and the server runs its node machinery (heartbeat,
   * handler registry, polling). */
  bool shared;
  /* Batches save round trips: the writer runs a store_write_batched unit
   * with its neighbours through their batch function (SQL_IDS_RESERVE and
   * SQL_SUBSCRIBE_MANY are then its statements). */
  bool batches;
  /* SQL_DELIVERY_DUE leases the rows it returns itself, in one statement
   * (?3 the lease's end, ?4 the node, ?5 the handlers this node runs, as
   * JSON); otherwise store.c runs SQL_DELIVERY_LEASE for each. */
  bool claim_leases;
  /* SQL_SUB_TAKE moves the rows it returns to the history itself (?4 the
   * time they are notified at) and says in a third column whether more
   * remain in the scope: one statement a chunk, not four. */
  bool take_moves;
  /* The rowid of the last row `c` inserted. A backend where RETURNING
   * costs a temporary table for each run (SQLite: about 5 us a statement)
   * sets it: its SQL_EVENT_INSERT_AUTO then returns no row, and its
   * SQL_SUB_NEXT_ID only reads the next id, which SQL_SUB_ID_TAKEN (?1)
   * records. NULL: both return the id themselves. */
  long long (*last_insert_id)(StoreConn *c);
  /* Turns `c`'s row triggers off (false) and on again (true), for a bulk
   * statement whose effect on the trigger-kept tables the caller writes
   * itself. SQLite prepares each statement of `c` again after either
   * (about 20 us a statement), so it pays off only for many rows. NULL:
   * the backend has no row triggers to skip. */
  void (*row_triggers)(StoreConn *c, bool on);
  /* Before each transaction: makes `c` usable again after it was lost,
   * reconnecting at most as often as its backoff allows. Returns 0, or
   * RESTOCK_EUNAVAIL with why in *err. */
  int (*ensure)(StoreConn *c, char **err);
  /* True when the last failure on `c` may pass if tried again (the
   * connection was lost, a deadlock, a serialization failure): the unit
   * is then answered 503, not 500. */
  bool (*transient)(StoreConn *c);
  /* Round trips to the server made on `c` so far (read from any thread). */
  unsigned long long (*round_trips)(StoreConn *c);
  /* Starts a thread of its own that calls notify(arg) whenever another
   * server than `node` made deliveries due (LISTEN/NOTIFY), reconnecting
   * by itself.
   * Returns 0 or a negative code with *err. */
  int (*listen)(const char *uri, const char *node, void (*notify)(void *arg),
                void *arg, void **state, char **err);
  /* Names the node whose writes the writer's connection makes, so that
   * the notifications its own commits raise do not wake it. */
  void (*set_node)(StoreConn *c, const char *node);
  /* Stops and frees what listen started. */
  void (*unlisten)(void *state);
  /* `uri` as a log line may show it, its password masked (malloc'd). */
  char *(*display_uri)(const char *uri);
} StoreDriver;

extern const StoreDriver store_sqlite_driver;
extern const StoreDriver store_pg_driver;

#endif
