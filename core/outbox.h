/* The outbox: events are rows written in the transaction that caused them,
 * then delivered at least once to every handler subscribed to their name.
 * Each (event, handler) delivery is retried on its own with exponential
 * backoff (1 s, 2 s, 4 s, ...) until its max_attempts, then marked dead.
 *
 * A running delivery holds a lease (its next_at pushed past the handler's
 * timeout), so a delivery cut short by a crash is retried after a restart. */
#ifndef RESTOCKD_OUTBOX_H
#define RESTOCKD_OUTBOX_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

struct App;
typedef struct Outbox Outbox;

/* Most handler runs in flight at once. */
#define OUTBOX_MAX_INFLIGHT 32

Outbox *outbox_new(struct App *app, uv_loop_t *loop);
/* Writes event `name` with `data` inside the caller's transaction, with one
 * pending delivery per handler the script subscribed to `name`, and logs
 * "Processing NAME which has N subscribers". The dispatcher looks for work
 * once the caller calls outbox_kick after committing. Returns 0 or
 * STORE_ERROR. */
int outbox_write(struct App *app, const char *name, json_t *data);
/* outbox_write that also gives the new event's id. */
int outbox_write_id(struct App *app, const char *name, json_t *data,
                    long long *id);
/* outbox_write in a transaction of its own, then outbox_kick. */
int outbox_emit(struct App *app, const char *name, json_t *data);
/* Keeps delivered events `ms` milliseconds, then deletes them (0: for
 * ever). Dead and pending events are kept. The pruning runs in small
 * transactions on a timer (every minute, or half the retention if that is
 * shorter). */
void outbox_set_retention(Outbox *o, long long ms);
/* Looks for due deliveries on the next loop iteration. */
void outbox_kick(Outbox *o);
/* Stops starting deliveries. `idle` runs once no handler is running (at
 * once if none is). Running deliveries cut short later by
 * lua_host_abort_all are released for a later run, not counted as failed. */
void outbox_stop(Outbox *o, void (*idle)(void *), void *arg);
/* Frees the outbox once its timer has closed (the loop must run). */
void outbox_close(Outbox *o);
size_t outbox_inflight(const Outbox *o);

#endif
