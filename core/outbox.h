/* The outbox: events are rows written in the transaction that caused them,
 * then delivered at least once to every handler subscribed to their name.
 * Each delivery (one per event and handler, or one per subscriber of the
 * event for a handler subscribed with each = "subscriber") is retried on its
 * own with exponential backoff (1 s, 2 s, 4 s, ...) until its max_attempts,
 * then marked dead.
 *
 * Deliveries are claimed by a write unit: each gets a lease in this node's
 * name (its next_at pushed past the handler's timeout, at most 15 s, and
 * renewed while the handler runs), and runs only once that unit's
 * transaction has committed, so a handler never runs for an event that was
 * not stored. A server that starts releases the leases the previous one
 * left (outbox_recover), so a delivery cut short by a crash runs again at
 * once. With several nodes on one database each delivery runs on one node
 * at a time: a claim skips the rows another node is claiming, an outcome is
 * recorded only under the lease it ran with, and a node that died has its
 * leases taken over once they end. */
#ifndef RESTOCKD_OUTBOX_H
#define RESTOCKD_OUTBOX_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "domain.h"

typedef struct Outbox Outbox;

/* Most handler runs in flight at once. */
#define OUTBOX_MAX_INFLIGHT 32
/* Most bytes of event data (JSON text) handed to the handlers running at
 * once: a handler holds its data decoded, several times its text, while it
 * waits on a mail API. Past it, claimed deliveries wait their turn (one
 * always runs), so that events of 10,000 subscribers each (2.5 MB apiece)
 * run two at a time, not 32. */
#define OUTBOX_MAX_INFLIGHT_BYTES (4u << 20)

/* One delivery to run: the handler, and the event's data as JSON text. */
typedef struct {
  const char *event;
  const char *handler;
  const char *subscriber; /* the email of a per-subscriber delivery, or "" */
  const char *data;
  long long event_id;
  long long attempts; /* before this run */
  uint64_t timeout_ms;
} OutboxRun;

typedef void (*OutboxRunDone)(void *arg, bool ok, bool retry, const char *err);

/* What runs a delivery (the Lua host, in the server; a fake in the unit
 * tests). `run` returns 0 once it started the run, and then calls `done`
 * exactly once, possibly before returning; or RESTOCK_ENOTFOUND (no such
 * handler) or RESTOCK_EINVAL (data that is not JSON), and never calls it. */
typedef struct {
  int (*run)(void *ctx, const OutboxRun *r, OutboxRunDone done, void *arg);
  void *ctx;
} OutboxRunner;

/* The data a per-subscriber delivery's handler gets (contract section 3):
 * `data` less `emails` and `subscribers`, plus `email` and `subscriber`
 * (the email's entry of `subscribers`, or {email = ...}). A new
 * reference. */
json_t *outbox_subscriber_data(json_t *data, const char *email);

Outbox *outbox_new(Domain *d, OutboxRunner runner);
/* Before the store starts: makes every delivery leased by a previous run
 * of this node due now: every lease on SQLite; on a shared database those
 * of `node` and of its dead predecessors on this host (node_is_dead_here).
 * Returns 0 or a negative code. */
int outbox_recover(Store *s, const char *node, long long *released);

/* Inside a unit: writes event `name` with `data` (not consumed) and one
 * pending delivery per handler the unit's Config subscribed to `name` (per
 * subscriber for each = "subscriber" handlers, from the data's "emails"),
 * and records the event in the unit's effects. `id` is the event's id from
 * store_event_next_id, or 0 for any; *out_id (if not NULL) gets it. */
int outbox_write(StoreTx *tx, Unit *u, const char *name, json_t *data,
                 long long id, long long *out_id);

/* Whether the unit's Config has a handler of `name` subscribed with
 * each = "subscriber". */
bool outbox_per_subscriber(const Unit *u, const char *name);

/* outbox_write for data its caller has as JSON text already: `text` the
 * event's data, `emails[k]` (k < nemails) its emails (an entry NULL: none;
 * `emails` NULL: the data has no list of emails, and a per-subscriber
 * handler gets one delivery of the whole event),
 * and `shares[k]` the data of emails[k]'s per-subscriber deliveries (as
 * outbox_subscriber_data makes it; `shares` may be NULL when
 * outbox_per_subscriber is false). `variant_id`: a restocked event's
 * variant, as store_event_insert takes it (NULL: read from `text`).
 * Nothing is consumed. */
int outbox_write_text(StoreTx *tx, Unit *u, const char *name, const char *text,
                      const char *variant_id, size_t nemails,
                      const char *const *emails, char *const *shares,
                      long long id, long long *out_id);

typedef struct RetryCall RetryCall;
struct RetryCall {
  Unit unit;
  long long event_id;
  void (*done)(RetryCall *c, int status);
  long long requeued; /* out */
};
/* Requeues the dead deliveries of an event (RESTOCK_ENOTFOUND for none such)
 * and wakes the outbox. */
void outbox_retry(Domain *d, RetryCall *c);

/* Keeps delivered events `ms` milliseconds, then deletes them (0: for
 * ever). Dead and pending events are kept. */
void outbox_set_retention(Outbox *o, long long ms);
/* Looks for due deliveries on the next loop iteration. */
void outbox_kick(Outbox *o);
/* A delivery may be claimed at `at_ms` (another node's retry, or the end of
 * its lease): claims then unless a claim is due sooner. */
void outbox_note_due(Outbox *o, long long at_ms);
/* The longest a delivery's lease runs before it is renewed (15 s unless
 * set): a node that dies has its deliveries taken over within it. */
void outbox_set_lease_max(Outbox *o, long long ms);
/* Stops starting deliveries. `idle` runs once no handler is running and
 * every outcome is recorded (at once if so already). Runs cut short later
 * by the shutdown are released for a later run, not counted as failed. */
void outbox_stop(Outbox *o, void (*idle)(void *), void *arg);
/* Frees the outbox once its handles have closed (the loop must run). */
void outbox_close(Outbox *o);
/* Handler runs in progress. */
size_t outbox_inflight(const Outbox *o);

#endif
