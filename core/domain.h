/* What the use-cases (subscriptions.c, inventory.c, engine.c, outbox.c) are
 * built from, and how one of them runs.
 *
 * A use-case operation is one unit of work: its function runs on the
 * storage side inside one transaction (store.h) and is the only place that
 * decides what the write entails (the events it writes, the checks it
 * schedules). What must happen on the loop after the commit follows from
 * that by itself: the unit records its effects as it writes (an event,
 * a check due at T), and unit_done applies them once the transaction has
 * committed: it logs and counts the events, wakes the outbox, rearms the
 * engine. A unit whose writes are undone has its effects dropped. No route
 * has to remember a follow-up step. */
#ifndef RESTOCKD_DOMAIN_H
#define RESTOCKD_DOMAIN_H

#include <stdbool.h>
#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "store.h"
#include "token.h"

struct Engine;
struct Outbox;
struct Node;

/* What the plugin's restock.on_subscribe hook said (contract section 3). */
typedef enum { HOOK_ALLOW, HOOK_REFUSE, HOOK_FAIL } HookOutcome;
typedef void (*HookDone)(void *arg, HookOutcome outcome, const char *message);
/* Runs the hook with `arg` (a JSON object, borrowed); `done` is called
 * once, maybe before this returns. Returns RESTOCK_ENOTFOUND when the
 * running script has no hook (`done` is then never called). */
typedef int (*SubscribeHookFn)(void *ctx, json_t *arg, HookDone done,
                               void *darg);

typedef struct Domain {
  uv_loop_t *loop;
  Store *store;
  /* The running script's settings; a reload swaps it (domain_set_config).
   * Each unit takes a reference of its own when it is submitted. */
  Config *config;
  struct Engine *engine; /* told of the checks units schedule */
  struct Outbox *outbox; /* told of the events units write */
  struct Node *node;     /* this process as a node of the service */
  unsigned char token_key[TOKEN_KEY_LEN];
  /* The plugin's hook runner (the server's; NULL: none), asked only when
   * the Config says the script set a hook. */
  SubscribeHookFn subscribe_hook;
  void *hook_ctx;
} Domain;

/* Replaces the current Config (taking `c`'s reference). */
void domain_set_config(Domain *d, Config *c);

/* An event a unit wrote, for the log line and the metrics after commit. */
typedef struct {
  char *name;
  size_t handlers;
} EffectEvent;

typedef struct {
  EffectEvent *events;
  size_t nevents, cap;
  long long check_due; /* earliest restock check scheduled; 0: none */
  bool kick;           /* deliveries became due (a retry) */
  long long emails_notified;
  long long conversions; /* notifications an order converted */
} Effects;

typedef struct Unit Unit;
/* A use-case's completion, on the loop: `status` is its function's result,
 * RESTOCK_ECOMMIT if the group's commit failed, RESTOCK_EUNAVAIL if the
 * store was stopping. */
typedef void (*UnitFinish)(Unit *u, int status);

/* Puts a replayable unit's own outputs back as they were when it was
 * queued (its Effects are cleared already). */
typedef void (*UnitReset)(Unit *u);

struct Unit {
  StoreWork work;
  Domain *d;
  Config *cfg; /* the settings the unit runs with */
  Effects fx;
  UnitFinish finish;
  UnitReset reset; /* private: unit_write_replayable's */
};

/* Queues `u` (usually embedded in the use-case's call struct) as a write
 * unit running `fn(tx, u)`; `finish` runs on the loop after the commit. */
void unit_write(Domain *d, Unit *u, StoreFn fn, UnitFinish finish);
/* Issue 14: the same, for a unit the writer may run together with its
 * neighbours through `batch` (store_write_batched); `fn` runs otherwise. */
void unit_write_batched(Domain *d, Unit *u, StoreFn fn, StoreBatchFn batch,
                        UnitFinish finish);
/* The same, for a unit whose `fn` the writer may run again, after `reset`
 * (StoreWork.reset): `fn` then changes nothing but the database, the
 * unit's Effects and what `reset` puts back. `batch` may be NULL. */
void unit_write_replayable(Domain *d, Unit *u, StoreFn fn, StoreBatchFn batch,
                           UnitReset reset, UnitFinish finish);
/* The same as a read unit: it sees committed rows and writes nothing. */
void unit_read(Domain *d, Unit *u, StoreFn fn, UnitFinish finish);

/* A read: `fn` runs on the storage side, in a read transaction, with the
 * call; it calls the store's read operations (a listing with a row
 * callback that renders the rows there, off the loop). `done` runs on the
 * loop. */
typedef struct ReadCall ReadCall;
struct ReadCall {
  Unit unit;
  int (*fn)(StoreTx *tx, ReadCall *c);
  void (*done)(ReadCall *c, int status);
  void *arg;
};
void domain_read(Domain *d, ReadCall *c);

/* Records an event written (with its handler count) in `u`'s effects. */
void effects_event(Effects *fx, const char *name, size_t handlers);
/* Records that deliveries became due without a new event. */
void effects_kick(Effects *fx);
/* Records a restock check due at `due_ms`. */
void effects_check(Effects *fx, long long due_ms);
void effects_clear(Effects *fx);

/* Longest id of a variant, location, channel or key. */
#define DOMAIN_MAX_ID 255
/* True when `s` is a usable identifier: 1 to DOMAIN_MAX_ID bytes of UTF-8
 * without control characters. */
bool domain_valid_id(const char *s);

/* Maps a use-case's status onto the HTTP status and error type the
 * contract gives it (404 not_found, 400 invalid_data, ...). */
int domain_http_status(int status, const char **type);

#endif
