/* The storage executor (the writer with its group commit, the readers, the
 * completions posted back to the loop) and every operation of store.h,
 * written once over the backend's driver (store_driver.h). */
#include "store.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_text.h"
#include "log.h"
#include "store_driver.h"
#include "xmalloc.h"

/* Most write units one transaction holds: a group that large already
 * amortizes the commit, and a bound keeps the first unit's wait short. */
#define GROUP_MAX 512
/* Most ids a batch reserves ahead for the next one, and how old they may
 * be when it takes them: the ids give subscription order, so those
 * reserved long before would put a late subscriber before earlier ones of
 * other nodes. */
#define ID_POOL_MAX 256
#define ID_POOL_FRESH_NS (1000ULL * 1000000)
/* Reader connections of a server, for listings and other read units. */
#define DEFAULT_READERS 2
/* A take of this many rows or more turns the row triggers off around its
 * move (store_subscription_take). */
#define TAKE_TRIGGERS_OFF 128

static const char *const stmt_names[SQL_COUNT_] = {
#define STORE_SQL_NAME(name) #name,
    STORE_STATEMENTS(STORE_SQL_NAME)
#undef STORE_SQL_NAME
};

struct StoreTx {
  Store *s;
  const StoreDriver *drv;
  StoreConn *conn;
  StoreStmt *stmt[SQL_COUNT_];
  int depth;   /* store_tx_begin levels open */
  bool writes; /* the writer's (or the CLI's): its reads may lock rows */
  /* Issue 14: ids the last store_subscribe_many reserved for the next
   * batch, so that it needs no round trip of its own for them. */
  long long pool_sub[ID_POOL_MAX];
  size_t pool_n, pool_used;
  uint64_t pool_at_ns;
  /* A backend without RETURNING (SQLite, last_insert_id) inside one group
   * transaction of the writer: the ids its units take are read once a
   * group and recorded once, before the commit, not once a subscribe.
   * Only this writer inserts, so within the transaction nothing else can
   * take them. A unit rolled back leaves a gap, never a reuse. */
  bool grouped;
  long long sub_next;  /* the next subscription id to give; 0: not read */
  long long sub_given; /* the largest given, recorded at the commit */
  bool event_known;    /* event_max holds the largest event id */
  long long event_max;
};

typedef struct {
  StoreWork *head, *tail;
} Queue;

struct Store {
  const StoreDriver *drv;
  char *uri;
  char *node_id;
  StoreRole role;
  void *server; /* the driver's server state */
  StoreTx writer;
  int nreaders;
  StoreTx *readers;
  uv_thread_t writer_thread;
  uv_thread_t *reader_threads;
  int threads_running;
  bool started;
  bool stopping;
  bool closed_async;
  uv_mutex_t mu; /* guards the queues, threads_running and stats */
  uv_cond_t wcond, rcond;
  uv_cond_t sync_cond; /* signalled when a sync unit is done */
  Queue wq, rq, dq;
  uv_async_t async;
  uv_loop_t *loop;
  size_t inflight;              /* loop thread only */
  int durability;               /* wanted; atomic */
  int applied;                  /* what the writer last set */
  unsigned long long wal_bytes; /* the writer's; copied into stats */
  StoreStats stats;
  /* Issue 14: whether the last transaction reached the database (atomic;
   * /health answers 503 while it is false), and the listener that wakes
   * this node when another one made deliveries due. */
  int healthy;
  void *listener;
  void (*wake)(void *);
  void *wake_arg;
  uv_async_t wake_async;
  bool wake_open;
};

static void queue_push(Queue *q, StoreWork *w) {
  w->next = NULL;
  if (q->tail)
    q->tail->next = w;
  else
    q->head = w;
  q->tail = w;
}

/* ---- statements ------------------------------------------------------------
 */

static void tx_init(StoreTx *tx, Store *s, StoreConn *conn) {
  memset(tx, 0, sizeof *tx);
  tx->s = s;
  tx->drv = s->drv;
  tx->conn = conn;
}

static void tx_release(StoreTx *tx) {
  for (int i = 0; i < SQL_COUNT_; i++) tx->drv->finalize(tx->stmt[i]);
  memset(tx->stmt, 0, sizeof tx->stmt);
  tx->drv->disconnect(tx->conn);
  tx->conn = NULL;
}

/* Statement `id`, prepared on first use (the tables it names exist only once
 * the migrations have run); NULL, logged, if it cannot be. */
static StoreStmt *stmt(StoreTx *tx, StmtId id) {
  StoreStmt *st = tx->stmt[id];
  if (!st) {
    char *err = NULL;
    if (!tx->drv->sql[id]) {
      /* A statement of the other backend's path only. */
      log_error("store: %s has no SQL on this backend", stmt_names[id]);
      return NULL;
    }
    st = tx->drv->prepare(tx->conn, tx->drv->sql[id], &err);
    if (!st) {
      log_error("store: cannot prepare %s: %s", stmt_names[id], err);
      free(err);
      return NULL;
    }
    tx->stmt[id] = st;
  }
  return st;
}

int store_prepare_all(StoreTx *tx, char *failed, size_t len) {
  for (int i = 0; i < SQL_COUNT_; i++) {
    if (!stmt(tx, (StmtId)i)) {
      snprintf(failed, len, "%s", stmt_names[i]);
      return RESTOCK_ESTORE;
    }
  }
  return 0;
}

/* Binds parameters 1.. from `types`: 's' a string or NULL, 'i' a long
 * long, 'I' a long long bound as NULL when not positive (an optional id),
 * 'd' a double, 'b' a bool (as 0 or 1). */
static void bind_all(StoreTx *tx, StoreStmt *st, const char *types,
                     va_list ap) {
  for (int i = 0; types[i]; i++) {
    switch (types[i]) {
      case 's': {
        const char *v = va_arg(ap, const char *);
        if (v)
          tx->drv->bind_text(st, i + 1, v);
        else
          tx->drv->bind_null(st, i + 1);
        break;
      }
      case 'i':
        tx->drv->bind_int(st, i + 1, va_arg(ap, long long));
        break;
      case 'I': {
        long long v = va_arg(ap, long long);
        if (v > 0)
          tx->drv->bind_int(st, i + 1, v);
        else
          tx->drv->bind_null(st, i + 1);
        break;
      }
      case 'd':
        tx->drv->bind_double(st, i + 1, va_arg(ap, double));
        break;
      case 'b':
        tx->drv->bind_int(st, i + 1, va_arg(ap, int) ? 1 : 0);
        break;
    }
  }
}

/* A statement being read: opened with q_open, stepped with q_step, and
 * always closed with q_close. */
typedef struct {
  StoreTx *tx;
  StoreStmt *st;
  StmtId id;
} Q;

static int q_open(Q *q, StoreTx *tx, StmtId id, const char *types, ...) {
  q->tx = tx;
  q->id = id;
  q->st = stmt(tx, id);
  if (!q->st) return RESTOCK_ESTORE;
  va_list ap;
  va_start(ap, types);
  bind_all(tx, q->st, types, ap);
  va_end(ap);
  return 0;
}

/* 1: a row; 0: done; RESTOCK_ESTORE: failed (logged). */
static int q_step(Q *q) {
  int rc = q->tx->drv->step(q->st);
  if (rc < 0)
    log_error("store: %s: %s", stmt_names[q->id],
              q->tx->drv->errmsg(q->tx->conn));
  return rc;
}

static void q_close(Q *q) {
  if (q->st) q->tx->drv->reset(q->st);
  q->st = NULL;
}

static long long q_int(Q *q, int col) {
  return q->tx->drv->column_int(q->st, col);
}
static const char *q_text(Q *q, int col) {
  return q->tx->drv->column_text(q->st, col);
}
static char *q_dup(Q *q, int col) {
  const char *t = q_text(q, col);
  return t ? xstrdup(t) : NULL;
}
static void q_copy(Q *q, int col, char *out, size_t len) {
  const char *t = q_text(q, col);
  snprintf(out, len, "%s", t ? t : "");
}

/* Runs a statement to its end; *changes (if not NULL) gets the rows it
 * changed. */
static int q_exec(StoreTx *tx, long long *changes, StmtId id, const char *types,
                  ...) {
  StoreStmt *st = stmt(tx, id);
  if (!st) return RESTOCK_ESTORE;
  va_list ap;
  va_start(ap, types);
  bind_all(tx, st, types, ap);
  va_end(ap);
  int rc;
  while ((rc = tx->drv->step(st)) == 1) {
  }
  if (rc < 0) {
    log_error("store: %s: %s", stmt_names[id], tx->drv->errmsg(tx->conn));
    tx->drv->reset(st);
    return RESTOCK_ESTORE;
  }
  if (changes) *changes = tx->drv->changes(tx->conn, st);
  tx->drv->reset(st);
  return 0;
}

/* Runs a statement whose first row's first column is an optional integer
 * (a count, a min()): *value gets it, *any whether there was one. */
static int q_scalar(StoreTx *tx, long long *value, bool *any, StmtId id,
                    const char *types, ...) {
  StoreStmt *st = stmt(tx, id);
  if (!st) return RESTOCK_ESTORE;
  va_list ap;
  va_start(ap, types);
  bind_all(tx, st, types, ap);
  va_end(ap);
  int rc = tx->drv->step(st);
  if (rc < 0) {
    log_error("store: %s: %s", stmt_names[id], tx->drv->errmsg(tx->conn));
    tx->drv->reset(st);
    return RESTOCK_ESTORE;
  }
  bool has = rc == 1 && !tx->drv->column_null(st, 0);
  if (any) *any = has;
  if (value) *value = has ? tx->drv->column_int(st, 0) : 0;
  tx->drv->reset(st);
  return 0;
}

/* Appends the first column of every row to *out. */
static int q_strings(StoreTx *tx, StrList *out, StmtId id, const char *types,
                     ...) {
  StoreStmt *st = stmt(tx, id);
  if (!st) return RESTOCK_ESTORE;
  va_list ap;
  va_start(ap, types);
  bind_all(tx, st, types, ap);
  va_end(ap);
  int rc;
  while ((rc = tx->drv->step(st)) == 1) {
    const char *t = tx->drv->column_text(st, 0);
    strlist_push(out, t ? t : "");
  }
  if (rc < 0)
    log_error("store: %s: %s", stmt_names[id], tx->drv->errmsg(tx->conn));
  tx->drv->reset(st);
  return rc < 0 ? RESTOCK_ESTORE : 0;
}

static int exec_id(StoreTx *tx, StmtId id) { return q_exec(tx, NULL, id, ""); }

/* ---- opening, running, closing ------------------------------------------- */

static const StoreDriver *driver_for(const char *uri) {
  /* libpq's URI schemes select PostgreSQL; every other name is a SQLite
   * file. */
  if (strncmp(uri, "postgresql://", 13) == 0 ||
      strncmp(uri, "postgres://", 11) == 0)
    return &store_pg_driver;
  return &store_sqlite_driver;
}

int store_open(const char *uri, const StoreOptions *o, Store **out,
               char **err) {
  const StoreDriver *drv = driver_for(uri);
  Store *s = xcalloc(1, sizeof *s);
  s->drv = drv;
  s->uri = xstrdup(uri);
  s->node_id = xstrdup(o->node_id ? o->node_id : "local");
  s->role = o->role;
  s->durability = s->applied = o->durability;
  s->nreaders = o->role == STORE_ROLE_SERVER
                    ? (o->readers >= 0 ? o->readers : DEFAULT_READERS)
                    : 0;
  if (drv->private_uri && drv->private_uri(uri)) s->nreaders = 0;
  int rc = 0;
  if (o->role == STORE_ROLE_SERVER && drv->server_open)
    rc = drv->server_open(uri, &s->server, err);
  StoreConn *conn = NULL;
  if (rc == 0)
    rc = drv->connect(uri, o->role == STORE_ROLE_CLI ? CONN_CLI : CONN_WRITER,
                      &conn, err);
  if (rc) {
    if (s->server) drv->server_close(s->server);
    free(s->uri);
    free(s->node_id);
    free(s);
    return rc;
  }
  tx_init(&s->writer, s, conn);
  s->writer.writes = true;
  if (drv->set_node) drv->set_node(conn, s->node_id);
  s->healthy = 1;
  if (o->durability != DURABILITY_PROCESS && drv->set_durability)
    drv->set_durability(conn, o->durability);
  uv_mutex_init(&s->mu);
  uv_cond_init(&s->wcond);
  uv_cond_init(&s->rcond);
  uv_cond_init(&s->sync_cond);
  *out = s;
  return 0;
}

const char *store_backend(const Store *s) { return s->drv->name; }

int store_run_bare(Store *s, StoreFn fn, void *arg) {
  return fn(&s->writer, arg);
}

int store_run(Store *s, StoreFn fn, void *arg) {
  StoreTx *tx = &s->writer;
  if (exec_id(tx, SQL_BEGIN)) return RESTOCK_ESTORE;
  int rc = fn(tx, arg);
  if (rc < 0) {
    exec_id(tx, SQL_ROLLBACK);
    return rc;
  }
  if (exec_id(tx, SQL_COMMIT)) {
    if (tx->drv->in_transaction(tx->conn)) exec_id(tx, SQL_ROLLBACK);
    return RESTOCK_ECOMMIT;
  }
  return rc;
}

/* Issue 14: a database that can be unreachable (PostgreSQL). Before a
 * transaction, the driver makes its connection usable again if it was lost;
 * while it cannot, the units fail at once with RESTOCK_EUNAVAIL (503)
 * instead of waiting. Returns false then. */
static bool tx_ensure(StoreTx *tx) {
  if (!tx->drv->ensure) return true;
  char *err = NULL;
  int rc = tx->drv->ensure(tx->conn, &err);
  if (rc) log_debug("store: %s", err ? err : "the database is unreachable");
  free(err);
  return rc == 0;
}

/* A unit that failed because of the database's state (a lost connection,
 * a deadlock with another node) is answered 503, as a failed commit is. */
static int unit_status(StoreTx *tx, int status) {
  if (status == RESTOCK_ESTORE && tx->drv->transient &&
      tx->drv->transient(tx->conn))
    return RESTOCK_EUNAVAIL;
  return status;
}

static void set_healthy(Store *s, bool up) {
  __atomic_store_n(&s->healthy, up ? 1 : 0, __ATOMIC_RELAXED);
}

/* Most units one batch call takes. */
#define BATCH_MAX 256

/* Issue 14: runs `first` and the neighbours that share its batch function
 * in one call of it, in a savepoint. Returns the last unit it ran, or NULL
 * when the batch failed (undone, the units' outputs untouched) and the
 * units must run one by one; *n gets how many it took. */
static StoreWork *run_batch(StoreTx *tx, StoreWork *first, size_t *n) {
  void *args[BATCH_MAX];
  int statuses[BATCH_MAX];
  StoreWork *last = first;
  size_t count = 1;
  args[0] = first->arg;
  while (last->next && last->next->batch == first->batch && count < BATCH_MAX) {
    last = last->next;
    args[count++] = last->arg;
  }
  *n = count;
  if (exec_id(tx, SQL_SAVEPOINT)) return NULL;
  tx->depth = 0;
  for (size_t i = 0; i < count; i++) statuses[i] = 0;
  int rc = first->batch(tx, args, statuses, count);
  while (tx->depth > 0) store_tx_rollback(tx);
  if (rc == 0 && exec_id(tx, SQL_RELEASE) == 0) {
    StoreWork *w = first;
    for (size_t i = 0; i < count; i++, w = w->next)
      w->status = unit_status(tx, statuses[i]);
    return last;
  }
  if (rc == 0) {
    /* Released nothing: the batch's outputs are set, so its units are not
     * run again; they fail. */
    for (StoreWork *w = first;; w = w->next) {
      w->status = RESTOCK_ESTORE;
      if (w == last) break;
    }
    return last;
  }
  if (tx->drv->in_transaction(tx->conn) && exec_id(tx, SQL_ROLLBACK_TO) == 0)
    exec_id(tx, SQL_RELEASE);
  return NULL;
}

/* Runs write unit `w` in the group's transaction; with `savepoint`, in a
 * savepoint of its own, undone alone when it fails. Returns its status. */
static int run_unit(StoreTx *tx, StoreWork *w, bool savepoint) {
  if (savepoint && exec_id(tx, SQL_SAVEPOINT))
    return unit_status(tx, RESTOCK_ESTORE);
  tx->depth = 0;
  int st = unit_status(tx, w->fn(tx, w->arg));
  while (tx->depth > 0) store_tx_rollback(tx); /* a unit's leftover */
  if (!savepoint) return st;
  if (st >= 0 && exec_id(tx, SQL_RELEASE) != 0) st = RESTOCK_ESTORE;
  if (st < 0 && tx->drv->in_transaction(tx->conn) &&
      exec_id(tx, SQL_ROLLBACK_TO) == 0)
    exec_id(tx, SQL_RELEASE);
  return st;
}

/* Whether a group may run without a savepoint a unit: every unit that can
 * have another after it is replayable (the last never runs again). */
static bool group_replayable(const StoreWork *first) {
  for (const StoreWork *w = first; w && w->next; w = w->next)
    if (!w->reset) return false;
  return true;
}

/* Undoes `failed`, a unit run without a savepoint that wrote before it
 * failed: rolls the group's transaction back, begins it again and runs the
 * units before it again, each after its reset and in a savepoint now. A
 * unit before it that failed without writing keeps its answer. Returns
 * false when the transaction could not be made again: run_group then
 * answers those units as a lost transaction's. */
static bool replay(StoreTx *tx, StoreWork *first, StoreWork *failed) {
  const StoreDriver *d = tx->drv;
  exec_id(tx, SQL_ROLLBACK);
  if (d->in_transaction(tx->conn) || exec_id(tx, SQL_BEGIN)) return false;
  log_debug("store: a unit failed after writing; its group runs again");
  for (StoreWork *v = first; v != failed; v = v->next) {
    if (v->status < 0) continue;
    v->reset(v->arg);
    v->status = run_unit(tx, v, true);
    if (!d->in_transaction(tx->conn)) return false;
  }
  return true;
}

/* Runs one group of write units in one transaction (the writer thread).
 * Returns whether it committed: the writer then runs the backend's
 * after_commit (writer_main), once the group's answers are on their way. */
static bool run_group(Store *s, StoreWork *first) {
  StoreTx *tx = &s->writer;
  const StoreDriver *d = s->drv;
  if (!tx_ensure(tx)) {
    set_healthy(s, false);
    unsigned long long n = 0;
    for (StoreWork *w = first; w; w = w->next, n++)
      w->status = RESTOCK_EUNAVAIL;
    uv_mutex_lock(&s->mu);
    s->stats.failed_commits++;
    s->stats.units += n;
    uv_mutex_unlock(&s->mu);
    return false;
  }
  int wanted = __atomic_load_n(&s->durability, __ATOMIC_RELAXED);
  if (wanted != s->applied && d->set_durability) {
    d->set_durability(tx->conn, (Durability)wanted);
    s->applied = wanted;
  }
  bool open = exec_id(tx, SQL_BEGIN) == 0;
  tx->grouped = open && d->last_insert_id;
  tx->sub_next = tx->sub_given = 0;
  tx->event_known = false;
  /* Units are run without a savepoint each when they can be run again: a
   * savepoint copies each page its unit first touches (SQLite's
   * statement journal: a malloc and 4 KB each) and costs two statements,
   * 15% of a subscribe's writer time. A unit that fails having written is
   * then undone by replay. */
  bool bare = open && d->total_changes && group_replayable(first);
  StoreWork *w = first;
  size_t solo = 0; /* units left of a batch that failed, to run alone */
  for (; w && open; w = w->next) {
    if (w->batch && d->batches && solo == 0) {
      size_t n = 0;
      StoreWork *last = run_batch(tx, w, &n);
      if (!last) {
        solo = n; /* and run this one alone, below */
      } else if (d->in_transaction(tx->conn)) {
        w = last;
        continue;
      } else {
        /* The batch lost the transaction: as below. */
        open = false;
        for (StoreWork *v = first; v != last->next; v = v->next)
          if (v->status >= 0) v->status = RESTOCK_ECOMMIT;
        w = last->next;
        break;
      }
    }
    if (solo > 0) solo--;
    if (bare) {
      long long before = d->total_changes(tx->conn);
      w->status = run_unit(tx, w, false);
      if (w->status < 0 && d->in_transaction(tx->conn) &&
          d->total_changes(tx->conn) != before) {
        bare = false; /* the rest of the group in savepoints */
        if (!replay(tx, first, w)) {
          if (d->in_transaction(tx->conn)) exec_id(tx, SQL_ROLLBACK);
          if (d->in_transaction(tx->conn)) {
            /* Nothing of this group may commit. */
            open = false;
            for (StoreWork *v = first; v != w; v = v->next)
              if (v->status >= 0) v->status = RESTOCK_ECOMMIT;
            w = w->next;
            break;
          }
        }
      }
    } else {
      w->status = run_unit(tx, w, true);
    }
    /* A failure that ended the whole transaction (a full disk does, in
     * SQLite) undid the units before this one too. */
    if (!d->in_transaction(tx->conn)) {
      open = false;
      for (StoreWork *v = first; v != w; v = v->next)
        if (v->status >= 0) v->status = RESTOCK_ECOMMIT;
      if (w->status >= 0) w->status = RESTOCK_ECOMMIT;
      w = w->next;
      break;
    }
  }
  /* Units never run: the transaction could not begin or was lost. */
  for (; w; w = w->next) w->status = RESTOCK_ECOMMIT;
  /* The subscription ids the group's units took (store_subscription_next_id),
   * recorded outside their savepoints: a unit undone keeps its gap. */
  if (open && tx->sub_given > 0 &&
      q_exec(tx, NULL, SQL_SUB_ID_TAKEN, "i", tx->sub_given) != 0) {
    if (d->in_transaction(tx->conn)) exec_id(tx, SQL_ROLLBACK);
    open = false;
    for (StoreWork *v = first; v; v = v->next) v->status = RESTOCK_ECOMMIT;
  }
  tx->grouped = false;
  if (open) {
    if (exec_id(tx, SQL_COMMIT) != 0) {
      if (d->in_transaction(tx->conn)) exec_id(tx, SQL_ROLLBACK);
      open = false;
      for (StoreWork *v = first; v; v = v->next) v->status = RESTOCK_ECOMMIT;
    }
  }
  bool failed = false;
  for (StoreWork *v = first; v; v = v->next)
    if (v->status == RESTOCK_ECOMMIT) failed = true;
  /* A transaction lost with its connection: the database is down (a
   * failed commit on a working connection, a full disk, is not). */
  set_healthy(s, !failed || !d->transient || !d->transient(tx->conn));
  if (failed)
    log_error(
        "store: a group commit failed; its writes were not stored and each "
        "of them is answered 503");
  uv_mutex_lock(&s->mu);
  if (failed)
    s->stats.failed_commits++;
  else
    s->stats.groups++;
  for (StoreWork *v = first; v; v = v->next) s->stats.units++;
  uv_mutex_unlock(&s->mu);
  return !failed;
}

static void writer_main(void *arg) {
  Store *s = arg;
  pthread_setname_np(pthread_self(), "restockd-writer");
  uv_mutex_lock(&s->mu);
  for (;;) {
    while (!s->wq.head && !s->stopping) uv_cond_wait(&s->wcond, &s->mu);
    if (!s->wq.head) break;
    StoreWork *first = s->wq.head, *last = first;
    for (int n = 1; n < GROUP_MAX && last->next; n++) last = last->next;
    s->wq.head = last->next;
    if (!s->wq.head) s->wq.tail = NULL;
    last->next = NULL;
    uv_mutex_unlock(&s->mu);
    bool committed = run_group(s, first);
    uv_mutex_lock(&s->mu);
    /* Completions go to the loop; a sync unit's caller is woken instead. */
    bool any = false, synced = false;
    for (StoreWork *w = first, *next; w; w = next) {
      next = w->next;
      if (w->sync) {
        w->sync_done = true;
        synced = true;
      } else {
        queue_push(&s->dq, w);
        any = true;
      }
    }
    if (synced) uv_cond_broadcast(&s->sync_cond);
    uv_mutex_unlock(&s->mu);
    if (any) uv_async_send(&s->async);
    /* The backend's upkeep after a commit (SQLite: the WAL's checkpoints,
     * which can take the writer a few ms with their fsyncs) comes after
     * the answers, so that it never delays the group just committed. */
    if (committed && s->drv->after_commit) {
      s->drv->after_commit(s->writer.conn, s->server, &s->wal_bytes);
      uv_mutex_lock(&s->mu);
      s->stats.wal_max_bytes = s->wal_bytes;
      uv_mutex_unlock(&s->mu);
    }
    uv_mutex_lock(&s->mu);
  }
  s->threads_running--;
  uv_mutex_unlock(&s->mu);
  uv_async_send(&s->async);
}

static void run_read(StoreTx *tx, StoreWork *w) {
  if (!tx_ensure(tx)) {
    w->status = RESTOCK_EUNAVAIL;
    return;
  }
  if (exec_id(tx, SQL_BEGIN_READ)) {
    w->status = unit_status(tx, RESTOCK_ESTORE);
    return;
  }
  w->status = unit_status(tx, w->fn(tx, w->arg));
  while (tx->depth > 0) store_tx_rollback(tx);
  if (exec_id(tx, SQL_COMMIT) && tx->drv->in_transaction(tx->conn))
    exec_id(tx, SQL_ROLLBACK);
}

static void reader_main(void *arg) {
  StoreTx *tx = arg;
  Store *s = tx->s;
  pthread_setname_np(pthread_self(), "restockd-reader");
  uv_mutex_lock(&s->mu);
  for (;;) {
    while (!s->rq.head && !s->stopping) uv_cond_wait(&s->rcond, &s->mu);
    StoreWork *w = s->rq.head;
    if (!w) break;
    s->rq.head = w->next;
    if (!s->rq.head) s->rq.tail = NULL;
    uv_mutex_unlock(&s->mu);
    run_read(tx, w);
    uv_mutex_lock(&s->mu);
    queue_push(&s->dq, w);
    uv_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
    uv_mutex_lock(&s->mu);
  }
  s->threads_running--;
  uv_mutex_unlock(&s->mu);
  uv_async_send(&s->async);
}

static void on_async_closed(uv_handle_t *h) {}

/* The listener thread: another node made deliveries due. */
static void listener_notify(void *arg) {
  Store *s = arg;
  uv_async_send(&s->wake_async);
}

static void on_wake(uv_async_t *a) {
  Store *s = a->data;
  if (s->wake && !s->stopping) s->wake(s->wake_arg);
}

/* On the loop: runs the completions the storage threads posted. */
static void on_async(uv_async_t *a) {
  Store *s = a->data;
  for (;;) {
    uv_mutex_lock(&s->mu);
    StoreWork *w = s->dq.head;
    s->dq.head = s->dq.tail = NULL;
    int running = s->threads_running;
    uv_mutex_unlock(&s->mu);
    if (!w) {
      if (s->stopping && running == 0 && !s->closed_async) {
        uv_thread_join(&s->writer_thread);
        for (int i = 0; i < s->nreaders; i++)
          uv_thread_join(&s->reader_threads[i]);
        if (s->drv->server_stop && s->server) s->drv->server_stop(s->server);
        s->started = false;
        s->closed_async = true;
        uv_close((uv_handle_t *)&s->async, on_async_closed);
      } else if (s->inflight == 0 && !s->stopping) {
        uv_unref((uv_handle_t *)&s->async);
      }
      return;
    }
    while (w) {
      StoreWork *next = w->next;
      s->inflight--;
      w->done(w->arg, w->status);
      w = next;
    }
  }
}

int store_start(Store *s, uv_loop_t *loop, char **err) {
  s->loop = loop;
  if (s->drv->server_start && s->server && s->drv->server_start(s->server, err))
    return RESTOCK_ESTORE;
  s->readers =
      xcalloc((size_t)(s->nreaders ? s->nreaders : 1), sizeof *s->readers);
  s->reader_threads = xcalloc((size_t)(s->nreaders ? s->nreaders : 1),
                              sizeof *s->reader_threads);
  for (int i = 0; i < s->nreaders; i++) {
    StoreConn *c = NULL;
    if (s->drv->connect(s->uri, CONN_READER, &c, err)) {
      for (int j = 0; j < i; j++) tx_release(&s->readers[j]);
      s->nreaders = 0;
      return RESTOCK_ESTORE;
    }
    tx_init(&s->readers[i], s, c);
  }
  uv_async_init(loop, &s->async, on_async);
  s->async.data = s;
  uv_unref((uv_handle_t *)&s->async);
  if (s->wake && s->drv->listen) {
    uv_async_init(loop, &s->wake_async, on_wake);
    s->wake_async.data = s;
    uv_unref((uv_handle_t *)&s->wake_async);
    s->wake_open = true;
    if (s->drv->listen(s->uri, s->node_id, listener_notify, s, &s->listener,
                       err)) {
      uv_close((uv_handle_t *)&s->wake_async, NULL);
      s->wake_open = false;
      uv_close((uv_handle_t *)&s->async, NULL);
      return RESTOCK_ESTORE;
    }
  }
  s->threads_running = 1 + s->nreaders;
  s->started = true;
  uv_thread_options_t o = {UV_THREAD_HAS_STACK_SIZE, 1 << 20};
  int made = 0;
  bool writer = uv_thread_create_ex(&s->writer_thread, &o, writer_main, s) == 0;
  for (; writer && made < s->nreaders; made++)
    if (uv_thread_create_ex(&s->reader_threads[made], &o, reader_main,
                            &s->readers[made]) != 0)
      break;
  if (writer && made == s->nreaders) return 0;
  /* Out of threads at start-up: stop the ones that started, and say so. */
  *err = xstrdup("cannot start the storage threads (out of threads?)");
  uv_mutex_lock(&s->mu);
  s->stopping = true;
  s->threads_running = 0;
  uv_cond_broadcast(&s->wcond);
  uv_cond_broadcast(&s->rcond);
  uv_mutex_unlock(&s->mu);
  if (writer) uv_thread_join(&s->writer_thread);
  for (int i = 0; i < made; i++) uv_thread_join(&s->reader_threads[i]);
  s->started = false;
  s->closed_async = true;
  uv_close((uv_handle_t *)&s->async, on_async_closed);
  if (s->drv->server_stop && s->server) s->drv->server_stop(s->server);
  return RESTOCK_ESTORE;
}

static void submit(Store *s, StoreWork *w, StoreFn fn, StoreBatchFn batch,
                   StoreDone done, void *arg, bool write) {
  /* Set before the unit is queued (under the mutex): the writer sees it. */
  w->batch = batch;
  w->fn = fn;
  w->done = done;
  w->arg = arg;
  w->status = 0;
  w->next = NULL;
  w->queued_ns = uv_hrtime();
  if (s->inflight++ == 0 && !s->closed_async) uv_ref((uv_handle_t *)&s->async);
  uv_mutex_lock(&s->mu);
  if (s->stopping || !s->started) {
    w->status = RESTOCK_EUNAVAIL;
    queue_push(&s->dq, w);
    uv_mutex_unlock(&s->mu);
    if (!s->closed_async) uv_async_send(&s->async);
    return;
  }
  if (write || s->nreaders == 0) {
    queue_push(&s->wq, w);
    uv_cond_signal(&s->wcond);
  } else {
    queue_push(&s->rq, w);
    uv_cond_signal(&s->rcond);
  }
  uv_mutex_unlock(&s->mu);
}

void store_write(Store *s, StoreWork *w, StoreFn fn, StoreDone done,
                 void *arg) {
  submit(s, w, fn, NULL, done, arg, true);
}

void store_read(Store *s, StoreWork *w, StoreFn fn, StoreDone done, void *arg) {
  submit(s, w, fn, NULL, done, arg, false);
}

void store_write_batched(Store *s, StoreWork *w, StoreFn fn, StoreBatchFn batch,
                         StoreDone done, void *arg) {
  submit(s, w, fn, batch, done, arg, true);
}

int store_write_sync(Store *s, StoreFn fn, void *arg, uint64_t timeout_ms) {
  /* On the heap, and left there on a timeout: the writer may still get to
   * it after the caller has gone. */
  StoreWork *w = xcalloc(1, sizeof *w);
  w->fn = fn;
  w->arg = arg;
  w->sync = true;
  uint64_t deadline = uv_hrtime() + timeout_ms * 1000000ULL;
  uv_mutex_lock(&s->mu);
  if (!s->started || s->stopping) {
    uv_mutex_unlock(&s->mu);
    free(w);
    return RESTOCK_EUNAVAIL;
  }
  queue_push(&s->wq, w);
  uv_cond_signal(&s->wcond);
  while (!w->sync_done) {
    uint64_t now = uv_hrtime();
    if (now >= deadline ||
        uv_cond_timedwait(&s->sync_cond, &s->mu, deadline - now) != 0)
      if (!w->sync_done) {
        uv_mutex_unlock(&s->mu);
        return RESTOCK_ETIMEDOUT;
      }
  }
  int status = w->status;
  uv_mutex_unlock(&s->mu);
  free(w);
  return status;
}

size_t store_inflight(const Store *s) { return s->inflight; }

void store_set_durability(Store *s, Durability d) {
  __atomic_store_n(&s->durability, (int)d, __ATOMIC_RELAXED);
}

void store_stop(Store *s) {
  if (!s || !s->started || s->stopping) return;
  /* The listener's thread is joined here: it is in poll(), woken at once,
   * or at most in one connection attempt (libpq's connect_timeout) while
   * the database is unreachable. Only then may its async handle close. */
  if (s->listener) s->drv->unlisten(s->listener);
  s->listener = NULL;
  if (s->wake_open) uv_close((uv_handle_t *)&s->wake_async, NULL);
  s->wake_open = false;
  uv_mutex_lock(&s->mu);
  s->stopping = true;
  uv_cond_broadcast(&s->wcond);
  uv_cond_broadcast(&s->rcond);
  uv_mutex_unlock(&s->mu);
  /* Kept alive until the threads have gone (on_async closes it). */
  uv_ref((uv_handle_t *)&s->async);
  uv_async_send(&s->async);
}

void store_close(Store *s) {
  if (!s) return;
  for (int i = 0; s->readers && i < s->nreaders; i++)
    tx_release(&s->readers[i]);
  free(s->readers);
  free(s->reader_threads);
  tx_release(&s->writer);
  if (s->server) s->drv->server_close(s->server);
  uv_mutex_destroy(&s->mu);
  uv_cond_destroy(&s->wcond);
  uv_cond_destroy(&s->rcond);
  uv_cond_destroy(&s->sync_cond);
  free(s->uri);
  free(s->node_id);
  free(s);
}

void store_stats(Store *s, StoreStats *out) {
  uv_mutex_lock(&s->mu);
  *out = s->stats;
  uv_mutex_unlock(&s->mu);
  /* The connections count their own round trips. */
  if (s->drv->round_trips) {
    if (s->writer.conn) out->round_trips += s->drv->round_trips(s->writer.conn);
    for (int i = 0; s->readers && i < s->nreaders; i++)
      if (s->readers[i].conn)
        out->round_trips += s->drv->round_trips(s->readers[i].conn);
  }
}

bool store_shared(const Store *s) { return s->drv->shared; }

bool store_healthy(const Store *s) {
  return __atomic_load_n(&s->healthy, __ATOMIC_RELAXED) != 0;
}

void store_set_wake(Store *s, void (*fn)(void *arg), void *arg) {
  s->wake = fn;
  s->wake_arg = arg;
}

char *store_display_uri(const char *uri) {
  const StoreDriver *d = driver_for(uri);
  return d->display_uri ? d->display_uri(uri) : xstrdup(uri);
}

int store_tx_begin(StoreTx *tx) {
  if (exec_id(tx, SQL_SAVEPOINT)) return RESTOCK_ESTORE;
  tx->depth++;
  return 0;
}

int store_tx_commit(StoreTx *tx) {
  if (exec_id(tx, SQL_RELEASE)) {
    store_tx_rollback(tx);
    return RESTOCK_ESTORE;
  }
  tx->depth--;
  return 0;
}

void store_tx_rollback(StoreTx *tx) {
  if (tx->drv->in_transaction(tx->conn) && exec_id(tx, SQL_ROLLBACK_TO) == 0)
    exec_id(tx, SQL_RELEASE);
  tx->depth--;
}

const char *store_tx_node(const StoreTx *tx) { return tx->s->node_id; }

/* ---- migrations -------------------------------------------------------------
 */

const Migration *store_migrations(const StoreTx *tx, size_t *count) {
  size_t n = 0;
  while (tx->drv->migrations[n].name) n++;
  *count = n;
  return tx->drv->migrations;
}

int store_migrations_applied(StoreTx *tx, char (*applied_at)[ISOTIME_LEN],
                             char **err) {
  size_t n = 0;
  const Migration *m = store_migrations(tx, &n);
  if (exec_id(tx, SQL_MIG_CREATE)) {
    *err = xasprintf("cannot create schema_migrations: %s",
                     tx->drv->errmsg(tx->conn));
    return RESTOCK_ESTORE;
  }
  for (size_t i = 0; i < n; i++) {
    Q q;
    applied_at[i][0] = '\0';
    if (q_open(&q, tx, SQL_MIG_GET, "s", m[i].name)) {
      *err = xstrdup("cannot read schema_migrations");
      return RESTOCK_ESTORE;
    }
    int rc = q_step(&q);
    if (rc == 1) q_copy(&q, 0, applied_at[i], ISOTIME_LEN);
    q_close(&q);
    if (rc < 0) {
      *err = xasprintf("cannot read schema_migrations: %s",
                       tx->drv->errmsg(tx->conn));
      return RESTOCK_ESTORE;
    }
  }
  return 0;
}

int store_migration_apply(StoreTx *tx, const Migration *m, char **err) {
  char *msg = NULL;
  if (exec_id(tx, SQL_BEGIN)) {
    *err =
        xasprintf("%s: cannot begin: %s", m->name, tx->drv->errmsg(tx->conn));
    return RESTOCK_ESTORE;
  }
  /* The migration's SQL is our own, compiled in; it has no parameters. */
  if (tx->drv->exec(tx->conn, m->sql, &msg)) {
    *err = xasprintf("%s: %s", m->name, msg);
    free(msg);
    exec_id(tx, SQL_ROLLBACK);
    return RESTOCK_ESTORE;
  }
  char now[ISOTIME_LEN];
  isotime_now(now);
  if (q_exec(tx, NULL, SQL_MIG_RECORD, "ss", m->name, now) ||
      exec_id(tx, SQL_COMMIT)) {
    *err =
        xasprintf("%s: cannot record: %s", m->name, tx->drv->errmsg(tx->conn));
    if (tx->drv->in_transaction(tx->conn)) exec_id(tx, SQL_ROLLBACK);
    return RESTOCK_ESTORE;
  }
  /* Statements prepared before this migration may name what it changed. */
  for (int i = 0; i < SQL_COUNT_; i++) {
    tx->drv->finalize(tx->stmt[i]);
    tx->stmt[i] = NULL;
  }
  return 0;
}

int store_migrations_lock(StoreTx *tx, bool lock, char **err) {
  if (exec_id(tx, lock ? SQL_MIG_LOCK : SQL_MIG_UNLOCK)) {
    *err = xasprintf("cannot %s the migrations: %s", lock ? "lock" : "unlock",
                     tx->drv->errmsg(tx->conn));
    return RESTOCK_ESTORE;
  }
  return 0;
}

/* ---- variants
 * ----------------------------------------------------------------- */

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

/* Reads the VARIANT_COLUMNS of a row. */
static void read_variant(Q *q, Variant *out) {
  out->id = q_dup(q, 0);
  out->product_id = q_dup(q, 1);
  out->sku = q_dup(q, 2);
  out->title = q_dup(q, 3);
  out->inventory_quantity = q_int(q, 4);
  out->allow_backorder = q_int(q, 5) != 0;
  out->manage_inventory = q_int(q, 6) != 0;
  q_copy(q, 7, out->created_at, sizeof out->created_at);
  q_copy(q, 8, out->updated_at, sizeof out->updated_at);
  out->has_levels = q_int(q, 9) != 0;
}

static int variant_read(StoreTx *tx, StmtId sid, const char *id, Variant *out) {
  Q q;
  if (q_open(&q, tx, sid, "s", id)) return RESTOCK_ESTORE;
  int rc = q_step(&q);
  if (rc == 1) read_variant(&q, out);
  q_close(&q);
  return rc < 0 ? rc : rc == 0 ? RESTOCK_ENOTFOUND : 0;
}

int store_variant_get(StoreTx *tx, const char *id, Variant *out) {
  /* Issue 14: with several writers, a write locks the variant it reads
   * (SQL_VARIANT_LOCK): what it decides from the row (in stock, changed)
   * stays true until it commits. */
  return variant_read(
      tx, tx->writes && tx->drv->shared ? SQL_VARIANT_LOCK : SQL_VARIANT_GET,
      id, out);
}

int store_variant_peek(StoreTx *tx, const char *id, Variant *out) {
  return variant_read(tx, SQL_VARIANT_GET, id, out);
}

int store_variant_put(StoreTx *tx, const Variant *v) {
  return q_exec(tx, NULL, SQL_VARIANT_PUT, "ssssibbss", v->id, v->product_id,
                v->sku, v->title, v->inventory_quantity, v->allow_backorder,
                v->manage_inventory, v->created_at, v->updated_at);
}

int store_variant_set_quantity(StoreTx *tx, const char *id, long long quantity,
                               const char *updated_at) {
  return q_exec(tx, NULL, SQL_VARIANT_SET_QTY, "sis", id, quantity, updated_at);
}

int store_variant_delete(StoreTx *tx, const char *id) {
  long long n = 0;
  int rc = q_exec(tx, NULL, SQL_LEVELS_DELETE_VARIANT, "s", id);
  if (rc == 0) rc = q_exec(tx, NULL, SQL_CHECK_DELETE, "s", id);
  if (rc == 0) rc = q_exec(tx, &n, SQL_VARIANT_DELETE, "s", id);
  return rc ? rc : n ? 0 : RESTOCK_ENOTFOUND;
}

int store_variant_list(StoreTx *tx, const VariantFilter *f, VariantRowFn fn,
                       void *ctx, long long *count) {
  /* ?2 is compared as an integer, or NULL for any. */
  long long sold = f->sold_out;
  int rc = f->sold_out < 0
               ? q_scalar(tx, count, NULL, SQL_VARIANT_COUNT, "ss", f->q, NULL)
               : q_scalar(tx, count, NULL, SQL_VARIANT_COUNT, "si", f->q, sold);
  if (rc) return rc;
  Q q;
  rc = f->sold_out < 0 ? q_open(&q, tx, SQL_VARIANT_LIST, "ssii", f->q, NULL,
                                f->limit, f->offset)
                       : q_open(&q, tx, SQL_VARIANT_LIST, "siii", f->q, sold,
                                f->limit, f->offset);
  if (rc) return rc;
  while ((rc = q_step(&q)) == 1) {
    Variant v;
    memset(&v, 0, sizeof v);
    read_variant(&q, &v);
    long long waiting = q_int(&q, 10);
    int stop = fn(ctx, &v, waiting);
    variant_clear(&v);
    if (stop) {
      rc = stop;
      break;
    }
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

/* ---- subscriptions
 * --------------------------------------------------------------- */

int store_subscription_next_id(StoreTx *tx, long long *id) {
  if (tx->grouped && tx->sub_next > 0) {
    *id = tx->sub_given = tx->sub_next++;
    return 0;
  }
  bool any = false;
  int rc = q_scalar(tx, id, &any, SQL_SUB_NEXT_ID, "");
  if (rc == 0 && !any) rc = RESTOCK_ESTORE;
  if (rc || !tx->drv->last_insert_id) return rc;
  /* A backend without RETURNING (see last_insert_id) records it apart:
   * in a group, once, before its commit (run_group). */
  if (tx->grouped) {
    tx->sub_given = *id;
    tx->sub_next = *id + 1;
    return 0;
  }
  return q_exec(tx, NULL, SQL_SUB_ID_TAKEN, "i", *id);
}

int store_event_next_id(StoreTx *tx, long long *id) {
  if (tx->grouped && tx->event_known) {
    if (tx->event_max == LLONG_MAX) return RESTOCK_ERANGE;
    *id = tx->event_max + 1;
    return 0;
  }
  bool any = false;
  int rc = q_scalar(tx, id, &any, SQL_EVENT_NEXT_ID, "");
  /* The largest rowid is taken: SQLite would pick a random free one, and
   * no id can be promised. */
  if (rc == 0 && !any) return RESTOCK_ERANGE;
  if (rc == 0 && tx->grouped && tx->drv->last_insert_id) {
    tx->event_known = true;
    tx->event_max = *id - 1;
  }
  return rc;
}

/* An event written in a group: the next id given is past it. */
static void event_written(StoreTx *tx, long long id) {
  if (tx->event_known && id > tx->event_max) tx->event_max = id;
}

/* Reads (id, created_at[, confirm_sent_at]) of a row found by its key;
 * *found false when none. */
static int find_key(StoreTx *tx, StmtId id, const NewSubscription *in,
                    StoredSubscription *out, bool *found) {
  Q q;
  if (q_open(&q, tx, id, "sss", in->variant_id, in->channel ? in->channel : "",
             in->email))
    return RESTOCK_ESTORE;
  int rc = q_step(&q);
  *found = rc == 1;
  if (rc == 1) {
    out->id = q_int(&q, 0);
    q_copy(&q, 1, out->created_at, ISOTIME_LEN);
    if (id == SQL_PEND_FIND) out->confirm_sent_at = q_int(&q, 2);
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_subscription_put(StoreTx *tx, const NewSubscription *in,
                           StoredSubscription *out) {
  memset(out, 0, sizeof *out);
  const char *channel = in->channel ? in->channel : "";
  bool found = false;
  /* A pending one first: it is usually none, and the index says so at
   * once. */
  int rc = find_key(tx, SQL_PEND_FIND, in, out, &found);
  if (rc) return rc;
  if (found) {
    out->pending = true;
    return q_exec(tx, NULL, SQL_PEND_SET_WISH, "iIs", out->id, in->quantity,
                  in->locale);
  }
  if (in->pending) {
    /* An active one stays as it is; a new one waits for its confirmation. */
    rc = find_key(tx, SQL_SUB_FIND, in, out, &found);
    if (rc) return rc;
    if (found)
      return q_exec(tx, NULL, SQL_SUB_SET_WISH, "iIs", out->id, in->quantity,
                    in->locale);
    rc = q_exec(tx, NULL, SQL_PEND_INSERT, "issssIsi", in->id, in->variant_id,
                channel, in->email, in->now, in->quantity, in->locale,
                in->now_ms);
    if (rc) return rc;
    out->id = in->id;
    out->created = out->pending = true;
    out->confirm_sent_at = in->now_ms;
    snprintf(out->created_at, ISOTIME_LEN, "%s", in->now);
    return 0;
  }
  long long n = 0;
  rc = q_exec(tx, &n, SQL_SUB_INSERT, "issssIIs", in->id, in->variant_id,
              channel, in->email, in->now, in->subscribed_event_id,
              in->quantity, in->locale);
  if (rc) return rc;
  if (n > 0) {
    out->id = in->id;
    out->created = true;
    snprintf(out->created_at, ISOTIME_LEN, "%s", in->now);
    return 0;
  }
  rc = find_key(tx, SQL_SUB_FIND, in, out, &found);
  if (rc) return rc;
  if (!found) return RESTOCK_ESTORE; /* ignored, yet not there */
  return q_exec(tx, NULL, SQL_SUB_SET_WISH, "iIs", out->id, in->quantity,
                in->locale);
}

int store_pending_sent(StoreTx *tx, long long id, long long now_ms) {
  return q_exec(tx, NULL, SQL_PEND_SET_SENT, "ii", id, now_ms);
}

/* Reads (variant, channel, email, locale, quantity) of one row. */
static int read_confirmed(StoreTx *tx, StmtId id, long long key,
                          ConfirmedSubscription *out, bool *found) {
  Q q;
  if (q_open(&q, tx, id, "i", key)) return RESTOCK_ESTORE;
  int rc = q_step(&q);
  *found = rc == 1;
  if (rc == 1) {
    q_copy(&q, 0, out->variant_id, sizeof out->variant_id);
    q_copy(&q, 1, out->sales_channel_id, sizeof out->sales_channel_id);
    q_copy(&q, 2, out->email, sizeof out->email);
    q_copy(&q, 3, out->locale, sizeof out->locale);
    out->quantity = q_int(&q, 4);
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_pending_confirm(StoreTx *tx, long long id, const char *now,
                          long long subscribed_event_id,
                          ConfirmedSubscription *out) {
  memset(out, 0, sizeof *out);
  bool found = false;
  int rc = read_confirmed(tx, SQL_PEND_GET, id, out, &found);
  if (rc) return rc;
  if (!found) {
    rc = read_confirmed(tx, SQL_SUB_EXISTS_ID, id, out, &found);
    if (rc) return rc;
    out->was_active = found;
    return found ? 0 : RESTOCK_ENOTFOUND;
  }
  rc = q_exec(tx, NULL, SQL_PEND_ACTIVATE, "isI", id, now, subscribed_event_id);
  return rc ? rc : q_exec(tx, NULL, SQL_PEND_DELETE, "i", id);
}

/* Walks the oldest rows of a table (SUB_SCAN or PEND_SCAN) created before
 * `cutoff`: up to `max` ids into `ids`, *reached when the walk met a
 * younger row or the end. */
static int scan_old(StoreTx *tx, StmtId scan, const char *cutoff, long long max,
                    long long *ids, size_t *n, bool *reached) {
  Q q;
  *n = 0;
  *reached = false;
  if (q_open(&q, tx, scan, "i", max)) return RESTOCK_ESTORE;
  int rc;
  while ((rc = q_step(&q)) == 1) {
    const char *created = q_text(&q, 1);
    if (!created || strcmp(created, cutoff) >= 0) {
      *reached = true;
      break;
    }
    ids[(*n)++] = q_int(&q, 0);
  }
  q_close(&q);
  if (rc == 0) *reached = true;
  return rc < 0 ? rc : 0;
}

#define WALK_MAX 512

int store_pending_purge(StoreTx *tx, const char *cutoff, long long max,
                        long long *deleted, bool *reached) {
  long long ids[WALK_MAX];
  size_t n = 0;
  *deleted = 0;
  int rc = scan_old(tx, SQL_PEND_SCAN, cutoff, max < WALK_MAX ? max : WALK_MAX,
                    ids, &n, reached);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = q_exec(tx, NULL, SQL_PEND_DELETE, "i", ids[i]);
    (*deleted)++;
  }
  return rc;
}

int store_subscription_expire(StoreTx *tx, const char *cutoff, const char *now,
                              long long max, long long *moved, bool *reached) {
  long long ids[WALK_MAX];
  size_t n = 0;
  *moved = 0;
  int rc = scan_old(tx, SQL_SUB_SCAN, cutoff, max < WALK_MAX ? max : WALK_MAX,
                    ids, &n, reached);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = q_exec(tx, NULL, SQL_SUB_EXPIRE_HIST, "is", ids[i], now);
    if (rc == 0) rc = q_exec(tx, NULL, SQL_SUB_REMOVE_ID, "i", ids[i]);
    (*moved)++;
  }
  return rc;
}

int store_email_known(StoreTx *tx, const char *email, bool *any) {
  long long v = 0;
  int rc = q_scalar(tx, &v, NULL, SQL_EMAIL_KNOWN, "s", email);
  *any = v != 0;
  return rc;
}

int store_subscription_remove(StoreTx *tx, long long id, bool *removed) {
  long long n = 0, m = 0;
  int rc = q_exec(tx, &n, SQL_SUB_REMOVE_ID, "i", id);
  if (rc == 0 && n == 0) rc = q_exec(tx, &m, SQL_PEND_DELETE, "i", id);
  *removed = n + m > 0;
  return rc;
}

static const char *const status_names[] = {"active", "notified", "cancelled",
                                           "expired", "pending"};

const char *subscription_status_name(SubscriptionStatus s) {
  return (unsigned)s < 5 ? status_names[s] : "active";
}

static SubscriptionStatus status_of(const char *s) {
  for (int i = 0; i < 5; i++)
    if (s && strcmp(s, status_names[i]) == 0) return (SubscriptionStatus)i;
  return SUB_NOTIFIED;
}

/* Reads a listing row (the SUB_LIST columns). */
static void read_subscription(Q *q, SubscriptionRow *row) {
  const char *channel = q_text(q, 2);
  *row = (SubscriptionRow){
      .id = q_int(q, 0),
      .variant_id = q_text(q, 1),
      .sales_channel_id = channel && *channel ? channel : NULL,
      .email = q_text(q, 3),
      .created_at = q_text(q, 4),
      .notified_at = q_text(q, 5),
      .status = status_of(q_text(q, 6)),
      .quantity = q_int(q, 7),
      .locale = q_text(q, 8),
  };
}

int store_subscription_list(StoreTx *tx, const SubscriptionFilter *f,
                            SubscriptionRowFn fn, void *ctx, long long *count) {
  /* Which form of a listing fits the filter: 0 any, 1 by email, 2 by
   * variant (the email's index is the more selective). */
  int form = f->email ? 1 : f->variant_id ? 2 : 0;
  bool history = f->status != SUB_ACTIVE && f->status != SUB_PENDING;
  const char *status = history ? status_names[f->status] : NULL;
  StmtId count_id = (history                    ? SQL_HIST_COUNT
                     : f->status == SUB_PENDING ? SQL_PEND_COUNT
                                                : SQL_SUB_COUNT) +
                    form;
  StmtId list_id = (history                    ? SQL_HIST_LIST
                    : f->status == SUB_PENDING ? SQL_PEND_LIST
                                               : SQL_SUB_LIST) +
                   form;
  int rc = q_scalar(tx, count, NULL, count_id, "ssss", f->variant_id, f->email,
                    f->sales_channel_id, status);
  if (rc) return rc;
  Q q;
  if (q_open(&q, tx, list_id, "ssssii", f->variant_id, f->email,
             f->sales_channel_id, status, f->limit, f->offset))
    return RESTOCK_ESTORE;
  while ((rc = q_step(&q)) == 1) {
    SubscriptionRow row;
    read_subscription(&q, &row);
    int stop = fn(ctx, &row);
    if (stop) {
      rc = stop;
      break;
    }
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_subscription_export(StoreTx *tx, int status, const char *variant_id,
                              long long page, ExportCursor *cursor,
                              SubscriptionRowFn fn, void *ctx) {
  static const StmtId tables[] = {SQL_EXPORT_ACTIVE, SQL_EXPORT_PENDING,
                                  SQL_EXPORT_HIST};
  const char *name = status < 0 ? NULL : subscription_status_name(status);
  long long left = page;
  while (cursor->table < 3 && left > 0) {
    Q q;
    if (q_open(&q, tx, tables[cursor->table], "issi", cursor->id, name,
               variant_id, left))
      return RESTOCK_ESTORE;
    int rc;
    long long got = 0;
    while ((rc = q_step(&q)) == 1) {
      SubscriptionRow row;
      read_subscription(&q, &row);
      cursor->id = row.id;
      got++;
      int stop = fn(ctx, &row);
      if (stop) {
        q_close(&q);
        return stop;
      }
    }
    q_close(&q);
    if (rc < 0) return rc;
    left -= got;
    if (left > 0) { /* this table is done */
      cursor->table++;
      cursor->id = 0;
    }
  }
  return 0;
}

int store_subscription_count(StoreTx *tx, long long *count) {
  return q_scalar(tx, count, NULL, SQL_SUB_TOTAL, "");
}

int store_subscription_any(StoreTx *tx, const char *variant_id, bool *any) {
  return q_scalar(tx, NULL, any, SQL_SUB_ANY, "s", variant_id);
}

int store_subscription_scopes(StoreTx *tx, const char *variant_id,
                              StrList *channels) {
  return q_strings(tx, channels, SQL_SUB_SCOPES, "s", variant_id);
}

void taken_list_clear(TakenList *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->items[i].email);
    free(l->items[i].locale);
  }
  free(l->items);
  memset(l, 0, sizeof *l);
}

/* Reads SQL_SUB_TAKE's rows into *taken; *last gets the last id read (-1
 * for none), *remain the "more" column of a backend whose take moves. */
static int take_rows(Q *q, TakenList *taken, long long *last, bool *remain) {
  int rc;
  *last = -1;
  *remain = false;
  while ((rc = q_step(q)) == 1) {
    if (taken->n == taken->cap) {
      taken->cap = taken->cap ? taken->cap * 2 : 64;
      taken->items = xrealloc(taken->items, taken->cap * sizeof *taken->items);
    }
    TakenSubscription *t = &taken->items[taken->n++];
    t->id = *last = q_int(q, 0);
    t->email = q_dup(q, 1);
    q_copy(q, 2, t->created_at, ISOTIME_LEN);
    t->locale = q_dup(q, 3);
    t->quantity = q_int(q, 4);
    if (q->tx->drv->take_moves) *remain = q_int(q, 5) != 0;
  }
  q_close(q);
  return rc;
}

/* Issue 14: a backend whose take moves the rows itself gets the time too,
 * and says in each row whether more remain (SQLite binds four); a shared
 * take also gets the id it starts after. */
static int take_open(Q *q, StoreTx *tx, const char *variant_id,
                     const char *channel, long long quantity, long long limit,
                     const char *now, long long shared_after) {
  if (shared_after >= 0)
    return q_open(q, tx, SQL_SUB_TAKE_SHARED, "ssiisi", variant_id, channel,
                  quantity, limit, now, shared_after);
  return q_open(q, tx, SQL_SUB_TAKE, "ssiis", variant_id, channel, quantity,
                limit, now);
}

void store_take_start(StoreTx *tx, const char *variant_id, const char *channel,
                      long long quantity, long long limit, const char *now,
                      long long shared_after, StoreTake *t) {
  memset(t, 0, sizeof *t);
  StmtId sid = shared_after >= 0 ? SQL_SUB_TAKE_SHARED : SQL_SUB_TAKE;
  if (tx->drv->take_moves && tx->drv->send) {
    Q q;
    if (take_open(&q, tx, variant_id, channel, quantity, limit, now,
                  shared_after)) {
      t->rc = RESTOCK_ESTORE;
      return;
    }
    int rc = tx->drv->send(q.st);
    if (rc == 0) {
      t->pending = q.st;
      t->shared = shared_after >= 0;
      return;
    }
    q_close(&q);
    if (rc < 0) {
      log_error("store: %s: %s", stmt_names[sid], tx->drv->errmsg(tx->conn));
      t->rc = RESTOCK_ESTORE;
      return;
    }
  }
  /* Not started ahead: taken now. */
  t->rc = store_subscription_take(tx, variant_id, channel, quantity, limit, now,
                                  shared_after, &t->taken, &t->more);
}

int store_take_finish(StoreTx *tx, StoreTake *t, TakenList *taken, bool *more) {
  if (t->pending) {
    Q q = {.tx = tx,
           .st = t->pending,
           .id = t->shared ? SQL_SUB_TAKE_SHARED : SQL_SUB_TAKE};
    t->pending = NULL;
    long long last;
    int rc = take_rows(&q, taken, &last, more);
    return rc < 0 ? rc : 0;
  }
  *taken = t->taken;
  *more = t->more;
  memset(&t->taken, 0, sizeof t->taken);
  return t->rc;
}

int store_subscription_take(StoreTx *tx, const char *variant_id,
                            const char *channel, long long quantity,
                            long long limit, const char *now,
                            long long shared_after, TakenList *taken,
                            bool *more) {
  Q q;
  if (take_open(&q, tx, variant_id, channel, quantity, limit, now,
                shared_after))
    return RESTOCK_ESTORE;
  long long last;
  bool remain;
  int rc = take_rows(&q, taken, &last, &remain);
  if (rc < 0) return rc;
  if (tx->drv->take_moves) {
    *more = remain;
    return 0;
  }
  /* Subscriptions are taken oldest first among those the stock can serve,
   * so they are exactly those of the scope up to the last one read that
   * want no more than the quantity. */
  /* The rows move in two statements, and their scope's demand counts in
   * one (all in this transaction: a failure undoes the three together).
   * The per-row triggers must not count them again: a large chunk turns
   * them off, since even a trigger that skips costs SQLite a sub-program
   * run per row (2.7 us a row moved, 0.3 s of a restock of 100,000); a
   * small one, where preparing the statements again would cost more, has
   * them skip while demand_bulk has its row. */
  if (last >= 0) {
    long long moved = 0;
    bool off = tx->drv->row_triggers && taken->n >= TAKE_TRIGGERS_OFF;
    if (off) tx->drv->row_triggers(tx->conn, false);
    int mv = off ? 0 : q_exec(tx, NULL, SQL_DEMAND_BULK_ON, "");
    if (mv == 0)
      mv = q_exec(tx, NULL, SQL_SUB_TO_HISTORY, "ssisi", variant_id, channel,
                  last, now, quantity);
    if (mv == 0)
      mv = q_exec(tx, &moved, SQL_SUB_DELETE_UPTO, "ssii", variant_id, channel,
                  last, quantity);
    if (off)
      tx->drv->row_triggers(tx->conn, true);
    else if (mv == 0)
      mv = q_exec(tx, NULL, SQL_DEMAND_BULK_OFF, "");
    if (mv == 0)
      mv =
          q_exec(tx, NULL, SQL_DEMAND_TAKEN, "ssi", variant_id, channel, moved);
    if (mv) return RESTOCK_ESTORE;
  }
  return store_subscription_scope_any(tx, variant_id, channel, quantity, more);
}

int store_subscription_span(StoreTx *tx, const char *variant_id,
                            const char *channel, long long *first,
                            long long *last) {
  Q q;
  *first = *last = 0;
  if (q_open(&q, tx, SQL_SUB_SPAN, "ss", variant_id, channel))
    return RESTOCK_ESTORE;
  int rc = q_step(&q);
  if (rc == 1 && !tx->drv->column_null(q.st, 0)) {
    *first = q_int(&q, 0);
    *last = q_int(&q, 1);
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_take_counts_begin(StoreTx *tx) {
  if (!tx->drv->take_moves) return 0;
  return q_exec(tx, NULL, SQL_DEMAND_DEFER, "");
}

int store_take_counts_end(StoreTx *tx, const char *variant_id,
                          const char *channel, long long taken) {
  if (!tx->drv->take_moves) return 0;
  return q_exec(tx, NULL, SQL_DEMAND_TAKEN, "ssi", variant_id, channel, taken);
}

int store_subscription_scope_any(StoreTx *tx, const char *variant_id,
                                 const char *channel, long long quantity,
                                 bool *any) {
  return q_scalar(tx, NULL, any, SQL_SUB_SCOPE_ANY, "ssi", variant_id, channel,
                  quantity);
}

int store_subscription_cancel(StoreTx *tx, const char *variant_id,
                              const char *channel, const char *now,
                              long long *moved) {
  const char *key = variant_id ? variant_id : channel;
  StmtId hist =
      variant_id ? SQL_SUB_CANCEL_VARIANT_HIST : SQL_SUB_CANCEL_CHANNEL_HIST;
  StmtId del = variant_id ? SQL_SUB_CANCEL_VARIANT_DELETE
                          : SQL_SUB_CANCEL_CHANNEL_DELETE;
  int rc = q_exec(tx, NULL, hist, "ss", key, now);
  if (rc == 0) rc = q_exec(tx, moved, del, "s", key);
  if (rc == 0)
    rc = q_exec(tx, NULL,
                variant_id ? SQL_PEND_CANCEL_VARIANT : SQL_PEND_CANCEL_CHANNEL,
                "s", key);
  return rc;
}

int store_history_variants(StoreTx *tx, const char *email,
                           const char *variant_id, StrList *variants) {
  return q_strings(tx, variants, SQL_HIST_VARIANTS, "ss", email, variant_id);
}

int store_event_scrub_restocked(StoreTx *tx, const char *variant_id,
                                const char *email, long long *changed) {
  long long n = 0;
  int rc = q_exec(tx, &n, SQL_EVENT_SCRUB_RESTOCKED, "ss", variant_id, email);
  if (rc) return rc;
  *changed += n;
  /* The email's own deliveries go, and their events' status follows. */
  StrList ids = {0};
  rc = q_strings(tx, &ids, SQL_DELIVERY_SCRUB_SUBSCRIBER, "ss", variant_id,
                 email);
  for (size_t i = 0; rc == 0 && i < ids.n; i++)
    rc = store_event_refresh(tx, strtoll(ids.items[i], NULL, 10), NULL);
  strlist_clear(&ids);
  return rc;
}

int store_event_erase_subscribed(StoreTx *tx, const char *email,
                                 const char *variant_id, long long *deleted) {
  long long n = 0, m = 0;
  int rc = q_exec(tx, &n, SQL_EVENT_ERASE_SUBSCRIBED, "ss", email, variant_id);
  if (rc == 0)
    rc = q_exec(tx, &m, SQL_EVENT_ERASE_CONFIRM, "ss", email, variant_id);
  *deleted += n + m;
  return rc;
}

int store_events_emitted_with(StoreTx *tx, const char *email, EventDataFn fn,
                              void *ctx) {
  Q q;
  if (q_open(&q, tx, SQL_EVENT_EMITTED_WITH, "s", email)) return RESTOCK_ESTORE;
  int rc;
  while ((rc = q_step(&q)) == 1) {
    int stop = fn(ctx, q_int(&q, 0), q_text(&q, 1));
    if (stop) {
      rc = stop;
      break;
    }
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_event_set_data(StoreTx *tx, long long id, const char *data) {
  return q_exec(tx, NULL, SQL_EVENT_SET_DATA, "is", id, data);
}

int store_subscription_erase(StoreTx *tx, const char *email,
                             const char *variant_id, long long *deleted) {
  long long a = 0, b = 0, c = 0;
  int rc = q_exec(tx, &a, SQL_SUB_ERASE, "ss", email, variant_id);
  if (rc == 0) rc = q_exec(tx, &b, SQL_HIST_ERASE, "ss", email, variant_id);
  if (rc == 0) rc = q_exec(tx, &c, SQL_PEND_ERASE, "ss", email, variant_id);
  *deleted += a + b + c;
  return rc;
}

/* ---- checks -----------------------------------------------------------------
 */

int store_check_schedule(StoreTx *tx, const char *variant_id, long long due_at,
                         bool replace) {
  return q_exec(tx, NULL, replace ? SQL_CHECK_REPLACE : SQL_CHECK_INSERT, "si",
                variant_id, due_at);
}

int store_check_next(StoreTx *tx, long long *due_at, bool *any) {
  return q_scalar(tx, due_at, any, SQL_CHECK_NEXT, "");
}

int store_check_due(StoreTx *tx, long long now, long long max, StrList *ids) {
  return q_strings(tx, ids, SQL_CHECK_DUE, "ii", now, max);
}

int store_check_due_shared(StoreTx *tx, long long now, long long max,
                           StrList *ids) {
  return q_strings(tx, ids, SQL_CHECK_DUE_SHARED, "ii", now, max);
}

int store_check_finish(StoreTx *tx, const char *variant_id, long long due_by) {
  return q_exec(tx, NULL, SQL_CHECK_FINISH, "si", variant_id, due_by);
}

int store_check_delete(StoreTx *tx, const char *variant_id) {
  return q_exec(tx, NULL, SQL_CHECK_DELETE, "s", variant_id);
}

int store_check_count(StoreTx *tx, long long *count) {
  return q_scalar(tx, count, NULL, SQL_CHECK_COUNT, "");
}

/* ---- the outbox
 * ---------------------------------------------------------------- */

int store_event_insert(StoreTx *tx, long long id, const char *name,
                       const char *data, const char *status,
                       const char *created_at, const char *variant_id,
                       long long *out_id) {
  if (id > 0) {
    *out_id = id;
    int rc = q_exec(tx, NULL, SQL_EVENT_INSERT, "isssss", id, name, data,
                    status, created_at, variant_id);
    if (rc == 0) event_written(tx, id);
    return rc;
  }
  if (tx->drv->last_insert_id) {
    int rc = q_exec(tx, NULL, SQL_EVENT_INSERT_AUTO, "sssss", name, data,
                    status, created_at, variant_id);
    if (rc == 0) event_written(tx, *out_id = tx->drv->last_insert_id(tx->conn));
    return rc;
  }
  bool any = false;
  int rc = q_scalar(tx, out_id, &any, SQL_EVENT_INSERT_AUTO, "sssss", name,
                    data, status, created_at, variant_id);
  return rc ? rc : any ? 0 : RESTOCK_ESTORE;
}

int store_subscription_set_event(StoreTx *tx, long long id,
                                 long long event_id) {
  return q_exec(tx, NULL, SQL_SUB_SET_EVENT, "ii", id, event_id);
}

int store_delivery_insert(StoreTx *tx, long long event_id, const char *handler,
                          const char *subscriber, long long max_attempts,
                          long long next_at, const char *now,
                          const char *data) {
  return q_exec(tx, NULL, SQL_DELIVERY_INSERT, "issiiss", event_id, handler,
                subscriber, max_attempts, next_at, now, data);
}

void due_delivery_clear(DueDelivery *d) {
  free(d->handler);
  free(d->subscriber);
  free(d->event);
  free(d->data);
  memset(d, 0, sizeof *d);
}

int store_delivery_claim(StoreTx *tx, long long now, long long max,
                         long long lease_until, const char *handlers,
                         DueDelivery **out, size_t *n) {
  Q q;
  *out = NULL;
  *n = 0;
  const char *node = store_tx_node(tx);
  /* Issue 14: a backend whose claim leases in the same statement takes
   * the lease and the handlers too (SQLite binds only the first two). */
  if (q_open(&q, tx, SQL_DELIVERY_DUE, "iiiss", now, max, lease_until, node,
             handlers))
    return RESTOCK_ESTORE;
  DueDelivery *items = NULL;
  size_t count = 0, cap = 0;
  int rc;
  while ((rc = q_step(&q)) == 1) {
    if (count == cap) {
      cap = cap ? cap * 2 : 16;
      items = xrealloc(items, cap * sizeof *items);
    }
    DueDelivery *d = &items[count++];
    d->event_id = q_int(&q, 0);
    d->handler = q_dup(&q, 1);
    d->subscriber = q_dup(&q, 2);
    if (!d->subscriber) d->subscriber = xstrdup("");
    d->attempts = q_int(&q, 3);
    d->max_attempts = q_int(&q, 4);
    d->event = q_dup(&q, 5);
    d->data = q_dup(&q, 6);
  }
  q_close(&q);
  for (size_t i = 0; rc == 0 && !tx->drv->claim_leases && i < count; i++)
    rc = q_exec(tx, NULL, SQL_DELIVERY_LEASE, "issis", items[i].event_id,
                items[i].handler, items[i].subscriber, lease_until, node);
  if (rc < 0) {
    for (size_t i = 0; i < count; i++) due_delivery_clear(&items[i]);
    free(items);
    return RESTOCK_ESTORE;
  }
  *out = items;
  *n = count;
  return 0;
}

int store_delivery_finish(StoreTx *tx, long long event_id, const char *handler,
                          const char *subscriber, const char *status,
                          long long attempts, long long next_at,
                          const char *error, const char *now, bool *kept) {
  long long n = 0;
  int rc = q_exec(tx, &n, SQL_DELIVERY_FINISH, "isssiisss", event_id, handler,
                  subscriber, status, attempts, next_at, error, now,
                  store_tx_node(tx));
  *kept = n > 0;
  return rc;
}

int store_event_refresh(StoreTx *tx, long long event_id, const char *error) {
  /* Issue 14: with several writers, the deliveries of one event may finish
   * on several nodes at once. The event's row is locked first, so that its
   * status is computed in a statement that sees every delivery finished by
   * a node that held the row before. */
  if (tx->drv->shared && q_exec(tx, NULL, SQL_EVENT_LOCK, "i", event_id))
    return RESTOCK_ESTORE;
  return q_exec(tx, NULL, SQL_EVENT_REFRESH, "is", event_id, error);
}

int store_event_finish(StoreTx *tx, long long event_id, long long attempts,
                       const char *error) {
  if (tx->drv->shared && q_exec(tx, NULL, SQL_EVENT_LOCK, "i", event_id))
    return RESTOCK_ESTORE;
  return q_exec(tx, NULL, SQL_EVENT_FINISH, "isi", event_id, error, attempts);
}

int store_delivery_next(StoreTx *tx, const char *handlers, long long *next_at,
                        bool *any) {
  return q_scalar(tx, next_at, any, SQL_DELIVERY_NEXT, "s", handlers);
}

int store_delivery_renew(StoreTx *tx, long long until, long long *renewed) {
  return q_exec(tx, renewed, SQL_DELIVERY_RENEW, "si", store_tx_node(tx),
                until);
}

int store_delivery_owners(StoreTx *tx, StrList *owners) {
  return q_strings(tx, owners, SQL_DELIVERY_OWNERS, "");
}

int store_delivery_release(StoreTx *tx, const char *node, long long now,
                           long long *released) {
  if (node) return q_exec(tx, released, SQL_DELIVERY_RELEASE, "si", node, now);
  return q_exec(tx, released, SQL_DELIVERY_RELEASE_ALL, "i", now);
}

int store_delivery_pending_count(StoreTx *tx, long long *count) {
  return q_scalar(tx, count, NULL, SQL_DELIVERY_PENDING, "");
}

/* The events `rows` (ascending ids) to the visitor, each followed by its
 * deliveries, which one statement reads for the whole page (not one per
 * event: on PostgreSQL that is a round trip each, 1,000 for a page). */
static int visit_events(StoreTx *tx, const EventRow *const *rows, size_t n,
                        const EventVisitor *v) {
  if (n == 0) return 0;
  Buf ids = {0};
  buf_puts(&ids, "[");
  for (size_t i = 0; i < n; i++)
    buf_printf(&ids, "%s%lld", i ? "," : "", rows[i]->id);
  buf_puts(&ids, "]");
  Q q;
  int rc = q_open(&q, tx, SQL_EVENT_DELIVERIES, "s", ids.data);
  buf_free(&ids);
  if (rc) return RESTOCK_ESTORE;
  rc = q_step(&q);
  for (size_t i = 0; rc >= 0 && i < n; i++) {
    int stop = v->event(v->ctx, rows[i]);
    if (stop) {
      rc = stop;
      break;
    }
    /* Both come in ascending event id. */
    while (rc == 1 && q_int(&q, 0) < rows[i]->id) rc = q_step(&q);
    while (rc == 1 && q_int(&q, 0) == rows[i]->id) {
      const char *sub = q_text(&q, 2);
      DeliveryRow d = {
          .handler = q_text(&q, 1),
          .subscriber = sub ? sub : "",
          .status = q_text(&q, 3),
          .attempts = q_int(&q, 4),
          .max_attempts = q_int(&q, 5),
          .last_error = q_text(&q, 6),
          .updated_at = q_text(&q, 7),
      };
      stop = v->delivery(v->ctx, &d);
      if (stop) break;
      rc = q_step(&q);
    }
    if (stop) {
      rc = stop;
      break;
    }
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

/* An event listing by a count and a list statement whose parameters are
 * (filter, status, limit, offset). */
static int event_list_with(StoreTx *tx, StmtId count_id, StmtId list_id,
                           const char *filter, const char *status,
                           long long limit, long long offset,
                           const EventVisitor *v, long long *count);

int store_event_list(StoreTx *tx, const char *name, const char *status,
                     long long limit, long long offset, const EventVisitor *v,
                     long long *count) {
  /* The statement whose index fits the filters: open events (few), a name
   * other than subscribed, or else a walk of the table. */
  StmtId count_id = SQL_EVENT_COUNT, list_id = SQL_EVENT_LIST;
  if (status && strcmp(status, "delivered") != 0) {
    count_id = SQL_EVENT_COUNT_OPEN;
    list_id = SQL_EVENT_LIST_OPEN;
  } else if (name && strcmp(name, "restock-notification.subscribed") != 0) {
    count_id = SQL_EVENT_COUNT_NAMED;
    list_id = SQL_EVENT_LIST_NAMED;
  }
  return event_list_with(tx, count_id, list_id, name, status, limit, offset, v,
                         count);
}

static int event_list_with(StoreTx *tx, StmtId count_id, StmtId list_id,
                           const char *name, const char *status,
                           long long limit, long long offset,
                           const EventVisitor *v, long long *count) {
  int rc = q_scalar(tx, count, NULL, count_id, "ss", name, status);
  if (rc) return rc;
  Q q;
  if (q_open(&q, tx, list_id, "ssii", name, status, limit, offset))
    return RESTOCK_ESTORE;
  /* The events first, then each one's deliveries: two statements cannot
   * be stepped at once on every backend. */
  typedef struct {
    EventRow row;
    char *strings[6];
  } Held;
  Held *held = NULL;
  size_t n = 0, cap = 0;
  while ((rc = q_step(&q)) == 1) {
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      held = xrealloc(held, cap * sizeof *held);
    }
    Held *h = &held[n++];
    h->strings[0] = q_dup(&q, 1);
    h->strings[1] = q_dup(&q, 2);
    h->strings[2] = q_dup(&q, 3);
    h->strings[3] = q_dup(&q, 5);
    h->strings[4] = q_dup(&q, 6);
    h->row = (EventRow){.id = q_int(&q, 0),
                        .name = h->strings[0],
                        .data = h->strings[1],
                        .status = h->strings[2],
                        .attempts = q_int(&q, 4),
                        .last_error = h->strings[3],
                        .created_at = h->strings[4]};
  }
  q_close(&q);
  if (rc == 0) {
    const EventRow **rows = xcalloc(n ? n : 1, sizeof *rows);
    for (size_t i = 0; i < n; i++) rows[i] = &held[i].row;
    rc = visit_events(tx, rows, n, v);
    free(rows);
  }
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < 5; k++) free(held[i].strings[k]);
  free(held);
  return rc < 0 ? rc : 0;
}

int store_event_retry(StoreTx *tx, long long id, long long now,
                      long long *requeued) {
  bool exists = false;
  int rc = q_scalar(tx, NULL, &exists, SQL_EVENT_EXISTS, "i", id);
  if (rc) return rc;
  if (!exists) return RESTOCK_ENOTFOUND;
  char text[ISOTIME_LEN];
  isotime_now(text);
  rc = q_exec(tx, requeued, SQL_EVENT_RETRY, "iis", id, now, text);
  return rc ? rc : store_event_refresh(tx, id, NULL);
}

int store_event_prune(StoreTx *tx, long long after_id, const char *cutoff,
                      long long max, long long *last_id, long long *deleted,
                      bool *reached) {
  if (max > 512) max = 512;
  Q q;
  if (q_open(&q, tx, SQL_EVENT_SCAN, "ii", after_id, max))
    return RESTOCK_ESTORE;
  long long ids[512];
  size_t n = 0;
  int rc;
  *last_id = after_id;
  *reached = false;
  *deleted = 0;
  /* Events are in created order: the walk stops at the first one young
   * enough to keep; older ones not delivered (dead, pending) are kept. */
  while ((rc = q_step(&q)) == 1) {
    const char *created = q_text(&q, 2);
    if (!created || strcmp(created, cutoff) >= 0) {
      *reached = true;
      break;
    }
    *last_id = q_int(&q, 0);
    const char *status = q_text(&q, 1);
    if (status && strcmp(status, "delivered") == 0) ids[n++] = *last_id;
  }
  q_close(&q);
  if (rc < 0) return rc;
  if (rc == 0 && *last_id == after_id) *reached = true;
  for (size_t i = 0; i < n; i++) {
    long long k = 0;
    if (q_exec(tx, &k, SQL_EVENT_DELETE, "i", ids[i])) return RESTOCK_ESTORE;
    *deleted += k;
  }
  return 0;
}

/* ---- multi-warehouse
 * ---------------------------------------------------------- */

void named_row_clear(NamedRow *r) {
  free(r->name);
  strlist_clear(&r->ids);
  memset(r, 0, sizeof *r);
}

/* Reads an (id, name, created_at, updated_at) row. */
static void read_named(Q *q, NamedRow *out) {
  q_copy(q, 0, out->id, sizeof out->id);
  free(out->name);
  out->name = q_dup(q, 1);
  q_copy(q, 2, out->created_at, sizeof out->created_at);
  q_copy(q, 3, out->updated_at, sizeof out->updated_at);
}

static int get_named(StoreTx *tx, StmtId id, const char *key, NamedRow *out) {
  Q q;
  if (q_open(&q, tx, id, "s", key)) return RESTOCK_ESTORE;
  int rc = q_step(&q);
  if (rc == 1 && out) read_named(&q, out);
  q_close(&q);
  return rc < 0 ? rc : rc == 0 ? RESTOCK_ENOTFOUND : 0;
}

/* Upserts an (id, name) row: `name` NULL keeps the stored one. */
static int upsert_named(StoreTx *tx, StmtId id, const char *key,
                        const char *name) {
  char now[ISOTIME_LEN];
  isotime_now(now);
  return q_exec(tx, NULL, id, "sssb", key, name, now, name != NULL);
}

int store_location_put(StoreTx *tx, const char *id, const char *name,
                       NamedRow *out) {
  int rc = upsert_named(tx, SQL_LOCATION_UPSERT, id, name);
  return rc ? rc : get_named(tx, SQL_LOCATION_GET, id, out);
}

int store_location_exists(StoreTx *tx, const char *id, bool *exists) {
  int rc = get_named(tx, SQL_LOCATION_GET, id, NULL);
  *exists = rc == 0;
  return rc == RESTOCK_ENOTFOUND ? 0 : rc;
}

int store_location_delete(StoreTx *tx, const char *id, StrList *variants) {
  long long n = 0;
  int rc = q_strings(tx, variants, SQL_LOCATION_VARIANTS, "s", id);
  if (rc == 0) rc = q_exec(tx, NULL, SQL_LEVELS_DELETE_LOCATION, "s", id);
  if (rc == 0) rc = q_exec(tx, NULL, SQL_CHANNEL_LOC_DELETE_LOCATION, "s", id);
  if (rc == 0) rc = q_exec(tx, &n, SQL_LOCATION_DELETE, "s", id);
  return rc ? rc : n ? 0 : RESTOCK_ENOTFOUND;
}

int store_channel_exists(StoreTx *tx, const char *id, bool *exists) {
  int rc = get_named(tx, SQL_CHANNEL_GET, id, NULL);
  *exists = rc == 0;
  return rc == RESTOCK_ENOTFOUND ? 0 : rc;
}

int store_channel_put(StoreTx *tx, const char *id, const char *name,
                      const StrList *locations, NamedRow *out, StrList *added) {
  int rc = upsert_named(tx, SQL_CHANNEL_UPSERT, id, name);
  if (rc == 0 && locations) {
    StrList before = {0};
    rc = q_strings(tx, &before, SQL_CHANNEL_LOCATIONS, "s", id);
    if (rc == 0) rc = q_exec(tx, NULL, SQL_CHANNEL_LOC_CLEAR, "s", id);
    for (size_t i = 0; rc == 0 && i < locations->n; i++) {
      rc = q_exec(tx, NULL, SQL_CHANNEL_LOC_ADD, "ss", id, locations->items[i]);
      if (!strlist_has(&before, locations->items[i]) &&
          !strlist_has(added, locations->items[i]))
        strlist_push(added, locations->items[i]);
    }
    strlist_clear(&before);
  }
  if (rc == 0) rc = get_named(tx, SQL_CHANNEL_GET, id, out);
  if (rc == 0) rc = q_strings(tx, &out->ids, SQL_CHANNEL_LOCATIONS, "s", id);
  return rc;
}

int store_channel_delete(StoreTx *tx, const char *id) {
  long long n = 0;
  int rc = q_exec(tx, NULL, SQL_CHANNEL_LOC_CLEAR, "s", id);
  if (rc == 0) rc = q_exec(tx, NULL, SQL_KEY_CHANNEL_DELETE_CHANNEL, "s", id);
  if (rc == 0) rc = q_exec(tx, &n, SQL_CHANNEL_DELETE, "s", id);
  return rc ? rc : n ? 0 : RESTOCK_ENOTFOUND;
}

/* Sums (stocked - reserved) over the rows of `q`, which is open. */
static int sum_levels(Q *q, long long *sum) {
  long long total = 0;
  int rc;
  bool overflow = false;
  while ((rc = q_step(q)) == 1) {
    long long avail;
    if (__builtin_sub_overflow(q_int(q, 0), q_int(q, 1), &avail) ||
        __builtin_add_overflow(total, avail, &total))
      overflow = true;
  }
  q_close(q);
  if (rc < 0) return rc;
  *sum = total;
  return overflow ? RESTOCK_ERANGE : 0;
}

int store_channel_quantity(StoreTx *tx, const char *variant_id,
                           const char *channel, long long *quantity) {
  Q q;
  if (q_open(&q, tx, SQL_CHANNEL_LEVELS, "ss", variant_id, channel))
    return RESTOCK_ESTORE;
  return sum_levels(&q, quantity);
}

int store_level_get(StoreTx *tx, const char *variant_id,
                    const char *location_id, long long *stocked,
                    long long *reserved) {
  Q q;
  if (q_open(&q, tx, SQL_LEVEL_GET, "ss", variant_id, location_id))
    return RESTOCK_ESTORE;
  int rc = q_step(&q);
  if (rc == 1) {
    *stocked = q_int(&q, 0);
    *reserved = q_int(&q, 1);
  }
  q_close(&q);
  return rc < 0 ? rc : rc == 0 ? RESTOCK_ENOTFOUND : 0;
}

static void read_level(Q *q, LevelRow *row) {
  *row = (LevelRow){.variant_id = q_text(q, 0),
                    .location_id = q_text(q, 1),
                    .stocked = q_int(q, 2),
                    .reserved = q_int(q, 3),
                    .created_at = q_text(q, 4),
                    .updated_at = q_text(q, 5)};
}

int store_level_put(StoreTx *tx, const char *variant_id,
                    const char *location_id, long long stocked,
                    long long reserved, const char *now, long long *before,
                    LevelRowFn fn, void *ctx) {
  long long old_stocked = 0, old_reserved = 0;
  int rc =
      store_level_get(tx, variant_id, location_id, &old_stocked, &old_reserved);
  if (rc != 0 && rc != RESTOCK_ENOTFOUND) return rc;
  *before = old_stocked - old_reserved;
  Q q;
  if (q_open(&q, tx, SQL_LEVEL_UPSERT, "ssiis", variant_id, location_id,
             stocked, reserved, now))
    return RESTOCK_ESTORE;
  rc = q_step(&q);
  if (rc == 1 && fn) {
    LevelRow row;
    read_level(&q, &row);
    fn(ctx, &row);
  }
  /* RETURNING rows come from the first step; finish the statement. */
  while (rc == 1) rc = q_step(&q);
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_level_list(StoreTx *tx, const char *variant_id,
                     const char *location_id, LevelRowFn fn, void *ctx) {
  Q q;
  int rc = variant_id
               ? q_open(&q, tx, SQL_LEVEL_LIST_VARIANT, "s", variant_id)
               : q_open(&q, tx, SQL_LEVEL_LIST_LOCATION, "s", location_id);
  if (rc) return rc;
  while ((rc = q_step(&q)) == 1) {
    LevelRow row;
    read_level(&q, &row);
    int stop = fn(ctx, &row);
    if (stop) {
      rc = stop;
      break;
    }
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_variant_sync_levels(StoreTx *tx, const char *variant_id,
                              const char *now, long long *sum) {
  Q q;
  if (q_open(&q, tx, SQL_LEVEL_LIST_VARIANT, "s", variant_id))
    return RESTOCK_ESTORE;
  /* The level rows' quantities are columns 2 and 3: sum them by hand. */
  long long total = 0;
  bool overflow = false;
  int rc;
  while ((rc = q_step(&q)) == 1) {
    long long avail;
    if (__builtin_sub_overflow(q_int(&q, 2), q_int(&q, 3), &avail) ||
        __builtin_add_overflow(total, avail, &total))
      overflow = true;
  }
  q_close(&q);
  if (rc < 0) return rc;
  if (overflow) return RESTOCK_ERANGE;
  *sum = total;
  return store_variant_set_quantity(tx, variant_id, total, now);
}

int store_key_put(StoreTx *tx, const char *id, const StrList *channels,
                  NamedRow *out) {
  char now[ISOTIME_LEN];
  isotime_now(now);
  int rc = q_exec(tx, NULL, SQL_KEY_UPSERT, "ss", id, now);
  if (rc == 0 && channels) {
    rc = q_exec(tx, NULL, SQL_KEY_CLEAR, "s", id);
    for (size_t i = 0; rc == 0 && i < channels->n; i++)
      rc = q_exec(tx, NULL, SQL_KEY_ADD, "ss", id, channels->items[i]);
  }
  if (rc == 0) rc = get_named(tx, SQL_KEY_GET, id, out);
  if (rc == 0) rc = q_strings(tx, &out->ids, SQL_KEY_CHANNELS, "s", id);
  return rc;
}

int store_key_channels(StoreTx *tx, const char *id, StrList *channels) {
  int rc = get_named(tx, SQL_KEY_GET, id, NULL);
  return rc ? rc : q_strings(tx, channels, SQL_KEY_CHANNELS, "s", id);
}

int store_key_delete(StoreTx *tx, const char *id) {
  long long n = 0;
  int rc = q_exec(tx, NULL, SQL_KEY_CLEAR, "s", id);
  if (rc == 0) rc = q_exec(tx, &n, SQL_KEY_DELETE, "s", id);
  return rc ? rc : n ? 0 : RESTOCK_ENOTFOUND;
}

int store_variants_to_check(StoreTx *tx, const char *location,
                            const char *channel, StrList *variant_ids) {
  return q_strings(tx, variant_ids, SQL_VARIANTS_TO_CHECK, "ss", location,
                   channel);
}

int store_named_list(StoreTx *tx, NamedKind kind, long long limit,
                     long long offset, NamedRowFn fn, void *ctx,
                     long long *count) {
  static const StmtId lists[] = {SQL_LOCATION_LIST, SQL_CHANNEL_LIST,
                                 SQL_KEY_LIST};
  static const StmtId counts[] = {SQL_LOCATION_COUNT, SQL_CHANNEL_COUNT,
                                  SQL_KEY_COUNT};
  int rc = q_scalar(tx, count, NULL, counts[kind], "");
  if (rc) return rc;
  Q q;
  if (q_open(&q, tx, lists[kind], "ii", limit, offset)) return RESTOCK_ESTORE;
  NamedRow *rows = NULL;
  size_t n = 0, cap = 0;
  while ((rc = q_step(&q)) == 1) {
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      rows = xrealloc(rows, cap * sizeof *rows);
    }
    memset(&rows[n], 0, sizeof rows[n]);
    read_named(&q, &rows[n++]);
  }
  q_close(&q);
  /* Each row's ids, once the listing statement is done. */
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (kind == NAMED_CHANNELS)
      rc = q_strings(tx, &rows[i].ids, SQL_CHANNEL_LOCATIONS, "s", rows[i].id);
    else if (kind == NAMED_KEYS)
      rc = q_strings(tx, &rows[i].ids, SQL_KEY_CHANNELS, "s", rows[i].id);
    if (rc == 0) rc = fn(ctx, &rows[i]);
  }
  for (size_t i = 0; i < n; i++) named_row_clear(&rows[i]);
  free(rows);
  return rc < 0 ? rc : 0;
}

/* ---- meta -------------------------------------------------------------------
 */

int store_meta_get(StoreTx *tx, const char *key, char **out) {
  Q q;
  if (q_open(&q, tx, SQL_META_GET, "s", key)) return RESTOCK_ESTORE;
  int rc = q_step(&q);
  if (rc == 1) *out = q_dup(&q, 0);
  q_close(&q);
  return rc < 0 ? rc : rc == 0 ? RESTOCK_ENOTFOUND : 0;
}

int store_meta_put(StoreTx *tx, const char *key, const char *value) {
  return q_exec(tx, NULL, SQL_META_PUT, "ss", key, value);
}

int store_meta_add(StoreTx *tx, const char *key, const char *value) {
  return q_exec(tx, NULL, SQL_META_ADD, "ss", key, value);
}

/* ---- shop connectors (issue 16) ------------------------------------------ */

/* Expired rows a set deletes, at most. */
#define KV_SWEEP_MAX 16

int store_kv_get(StoreTx *tx, const char *key, long long now_ms, char **out) {
  Q q;
  if (q_open(&q, tx, SQL_KV_GET, "si", key, now_ms)) return RESTOCK_ESTORE;
  int rc = q_step(&q);
  if (rc == 1) *out = q_dup(&q, 0);
  q_close(&q);
  return rc < 0 ? rc : rc == 0 ? RESTOCK_ENOTFOUND : 0;
}

int store_kv_put(StoreTx *tx, const char *key, const char *value,
                 long long expires_at, long long now_ms) {
  char now[ISOTIME_LEN];
  isotime_format(now_ms, now);
  int rc =
      value ? q_exec(tx, NULL, SQL_KV_PUT, "ssIs", key, value, expires_at, now)
            : q_exec(tx, NULL, SQL_KV_DELETE, "s", key);
  if (rc == 0)
    rc = q_exec(tx, NULL, SQL_KV_SWEEP, "ii", now_ms, (long long)KV_SWEEP_MAX);
  return rc;
}

int store_lease_claim(StoreTx *tx, const char *name, long long now_ms,
                      long long until_ms, bool *held) {
  long long n = 0;
  int rc = q_exec(tx, &n, SQL_LEASE_CLAIM, "ssii", name, tx->s->node_id,
                  until_ms, now_ms);
  *held = rc == 0 && n > 0;
  return rc;
}

int store_lease_release(StoreTx *tx, const char *name) {
  return q_exec(tx, NULL, SQL_LEASE_RELEASE, "ss", name, tx->s->node_id);
}

int store_order_insert(StoreTx *tx, const char *order_id,
                       const char *created_at, const char *now,
                       bool *inserted) {
  long long n = 0;
  int rc = q_exec(tx, &n, SQL_ORDER_INSERT, "sss", order_id, created_at, now);
  *inserted = rc == 0 && n > 0;
  return rc;
}

int store_conversion_candidate(StoreTx *tx, const char *email,
                               const char *variant_id, const char *from,
                               const char *to, long long *history_id) {
  bool any = false;
  int rc = q_scalar(tx, history_id, &any, SQL_CONVERSION_CANDIDATE, "ssss",
                    email, variant_id, from, to);
  return rc ? rc : any ? 0 : RESTOCK_ENOTFOUND;
}

int store_conversion_mark(StoreTx *tx, long long history_id, const char *at,
                          const char *order_id, const char *currency,
                          long long amount, bool *marked) {
  long long n = 0;
  int rc = q_exec(tx, &n, SQL_CONVERSION_MARK, "isssi", history_id, at,
                  order_id, currency, amount);
  *marked = rc == 0 && n > 0;
  return rc;
}

int store_conversion_totals(StoreTx *tx, const ConversionFilter *f,
                            long long *notified, long long *converted) {
  Q q;
  if (q_open(&q, tx, SQL_REPORT_TOTALS, "sss", f->since, f->until,
             f->variant_id))
    return RESTOCK_ESTORE;
  int rc = q_step(&q);
  if (rc == 1) {
    *notified = q_int(&q, 0);
    *converted = q_int(&q, 1);
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_conversion_revenue(StoreTx *tx, const ConversionFilter *f,
                             RevenueRowFn fn, void *ctx) {
  Q q;
  if (q_open(&q, tx, SQL_REPORT_REVENUE, "sss", f->since, f->until,
             f->variant_id))
    return RESTOCK_ESTORE;
  int rc;
  while ((rc = q_step(&q)) == 1) {
    const char *currency = q_text(&q, 0);
    int stop = fn(ctx, currency ? currency : "", q_int(&q, 1));
    if (stop) {
      rc = stop;
      break;
    }
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

/* ---- nodes
 * -------------------------------------------------------------------- */

int store_node_beat(StoreTx *tx, const char *started_at, const char *version,
                    const char *handlers) {
  return q_exec(tx, NULL, SQL_NODE_BEAT, "ssss", store_tx_node(tx), started_at,
                version, handlers);
}

int store_node_list(StoreTx *tx, NodeRowFn fn, void *ctx) {
  Q q;
  if (q_open(&q, tx, SQL_NODE_LIST, "")) return RESTOCK_ESTORE;
  int rc;
  while ((rc = q_step(&q)) == 1) {
    NodeRow row = {.id = q_text(&q, 0),
                   .started_at = q_text(&q, 1),
                   .last_seen_at = q_text(&q, 2),
                   .version = q_text(&q, 3)};
    int stop = fn(ctx, &row);
    if (stop) {
      rc = stop;
      break;
    }
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

int store_node_peers(StoreTx *tx, StrList *handlers) {
  return q_strings(tx, handlers, SQL_NODE_PEERS, "s", store_tx_node(tx));
}

int store_node_delete(StoreTx *tx) {
  return q_exec(tx, NULL, SQL_NODE_DELETE, "s", store_tx_node(tx));
}

/* ---- batches (issue 14)
 * -------------------------------------------------------- */

int store_ids_reserve(StoreTx *tx, size_t n, long long *subscription_ids) {
  /* Those the last batch reserved ahead, if there are enough, fresh. */
  if (tx->pool_n - tx->pool_used >= n &&
      uv_hrtime() - tx->pool_at_ns < ID_POOL_FRESH_NS) {
    memcpy(subscription_ids, tx->pool_sub + tx->pool_used,
           n * sizeof(long long));
    tx->pool_used += n;
    return 0;
  }
  tx->pool_n = tx->pool_used = 0;
  Q q;
  if (q_open(&q, tx, SQL_IDS_RESERVE, "i", (long long)n)) return RESTOCK_ESTORE;
  size_t got = 0;
  int rc;
  while ((rc = q_step(&q)) == 1 && got < n) {
    subscription_ids[got++] = q_int(&q, 0);
  }
  q_close(&q);
  return rc < 0 ? rc : got == n ? 0 : RESTOCK_ESTORE;
}

int store_subscribe_many(StoreTx *tx, const SubscribeRow *rows, size_t n,
                         long long next_at, SubscribeResult *out) {
  /* The rows go as one JSON parameter: one statement, one round trip. */
  json_t *list = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(
        list,
        json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s}", "i", (json_int_t)i,
                  "id", (json_int_t)rows[i].id, "v", rows[i].variant_id, "e",
                  rows[i].email, "now", rows[i].now, "data", rows[i].data, "h",
                  rows[i].handlers));
  char *text = json_text(list);
  json_decref(list);
  if (!text) return RESTOCK_ESTORE;
  /* The statement also reserves ids for the next batch (rows with i = -1):
   * under load, each batch then costs one round trip fewer. */
  long long ahead = (long long)(2 * n > ID_POOL_MAX ? ID_POOL_MAX : 2 * n);
  Q q;
  int rc = q_open(&q, tx, SQL_SUBSCRIBE_MANY, "sii", text, next_at, ahead);
  free(text);
  if (rc) return RESTOCK_ESTORE;
  size_t got = 0;
  tx->pool_n = tx->pool_used = 0;
  tx->pool_at_ns = uv_hrtime();
  while ((rc = q_step(&q)) == 1) {
    long long i = q_int(&q, 0);
    if (i == -1 && tx->pool_n < ID_POOL_MAX) {
      tx->pool_sub[tx->pool_n++] = q_int(&q, 3);
      continue;
    }
    if (i < 0 || (size_t)i >= n) continue;
    out[i].verdict = (SubscribeVerdict)q_int(&q, 1);
    q_copy(&q, 2, out[i].created_at, sizeof out[i].created_at);
    got++;
  }
  q_close(&q);
  return rc < 0 ? rc : got == n ? 0 : RESTOCK_ESTORE;
}

int store_conversion_variants(StoreTx *tx, const ConversionFilter *f,
                              long long limit, long long offset,
                              ConversionVariant **out, size_t *n,
                              long long *count) {
  *out = NULL;
  *n = 0;
  int rc = q_scalar(tx, count, NULL, SQL_REPORT_VARIANT_COUNT, "sss", f->since,
                    f->until, f->variant_id);
  if (rc) return rc;
  Q q;
  if (q_open(&q, tx, SQL_REPORT_VARIANTS, "sssii", f->since, f->until,
             f->variant_id, limit, offset))
    return RESTOCK_ESTORE;
  size_t cap = 0;
  while ((rc = q_step(&q)) == 1) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      *out = xrealloc(*out, cap * sizeof **out);
    }
    ConversionVariant *v = &(*out)[(*n)++];
    q_copy(&q, 0, v->variant_id, sizeof v->variant_id);
    v->notified = q_int(&q, 1);
    v->converted = q_int(&q, 2);
  }
  q_close(&q);
  return rc < 0 ? rc : 0;
}

/* ---- the web console (issue 17) -------------------------------------------
 */

int store_session_put(StoreTx *tx, const char *selector,
                      const char *validator_hash, const char *created_at,
                      long long expires_at) {
  return q_exec(tx, NULL, SQL_SESSION_INSERT, "sssi", selector, validator_hash,
                created_at, expires_at);
}

int store_session_get(StoreTx *tx, const char *selector, long long now,
                      char validator_hash[65], long long *expires_at) {
  Q q;
  if (q_open(&q, tx, SQL_SESSION_GET, "si", selector, now))
    return RESTOCK_ESTORE;
  int rc = q_step(&q);
  if (rc == 1) {
    q_copy(&q, 0, validator_hash, 65);
    *expires_at = q_int(&q, 1);
  }
  q_close(&q);
  return rc < 0 ? rc : rc == 0 ? RESTOCK_ENOTFOUND : 0;
}

int store_session_delete(StoreTx *tx, const char *selector) {
  return q_exec(tx, NULL, SQL_SESSION_DELETE, "s", selector);
}

int store_session_prune(StoreTx *tx, long long now, long long *deleted) {
  return q_exec(tx, deleted, SQL_SESSION_PRUNE, "i", now);
}

int store_demand_list(StoreTx *tx, const char *channel, long long limit,
                      long long offset, DemandRowFn fn, void *ctx,
                      long long *count) {
  int rc = channel ? q_scalar(tx, count, NULL, SQL_DEMAND_COUNT_CHANNEL, "s",
                              channel)
                   : q_scalar(tx, count, NULL, SQL_DEMAND_COUNT, "");
  if (rc) return rc;
  Q q;
  rc = channel ? q_open(&q, tx, SQL_DEMAND_LIST_CHANNEL, "sii", channel, limit,
                        offset)
               : q_open(&q, tx, SQL_DEMAND_LIST, "ii", limit, offset);
  if (rc) return RESTOCK_ESTORE;
  /* Every row is read before `fn` runs, so that it may run statements of
   * its own: two cannot be stepped at once on every backend. */
  typedef struct {
    Variant v;
    long long waiting, notified, converted;
    char *oldest;
  } Held;
  Held *held = NULL;
  size_t n = 0, cap = 0;
  while ((rc = q_step(&q)) == 1) {
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      held = xrealloc(held, cap * sizeof *held);
    }
    Held *h = &held[n++];
    memset(h, 0, sizeof *h);
    read_variant(&q, &h->v);
    h->waiting = q_int(&q, 10);
    h->notified = q_int(&q, 11);
    h->oldest = q_dup(&q, 12);
    h->converted = q_int(&q, 13);
  }
  q_close(&q);
  rc = rc < 0 ? rc : 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    DemandRow row = {&held[i].v, held[i].waiting, held[i].notified,
                     held[i].converted, held[i].oldest};
    rc = fn(tx, ctx, &row);
  }
  for (size_t i = 0; i < n; i++) {
    variant_clear(&held[i].v);
    free(held[i].oldest);
  }
  free(held);
  return rc;
}

int store_event_list_variant(StoreTx *tx, const char *variant_id,
                             const char *status, long long limit,
                             long long offset, const EventVisitor *v,
                             long long *count) {
  return event_list_with(tx, SQL_EVENT_COUNT_VARIANT, SQL_EVENT_LIST_VARIANT,
                         variant_id, status, limit, offset, v, count);
}
