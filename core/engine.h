/* The restock engine: scheduled restock checks and the restock rule.
 *
 * A committed change that can raise a variant's quantity schedules a check
 * trigger_delay ms later, stored in the database in the same transaction
 * (engine_schedule_check). One libuv timer is set to the earliest due check
 * (engine_rearm, after the commit). At the check, each scope whose quantity
 * is above inventory_required has its subscriptions moved to the history and
 * its restock-notification.restocked events written, in one transaction of
 * at most 10,000 subscriptions; a larger fan-out continues in the next loop
 * iterations, the check staying scheduled until it is done. */
#ifndef RESTOCKD_ENGINE_H
#define RESTOCKD_ENGINE_H

#include <uv.h>

#include "store.h"

struct App;
typedef struct Engine Engine;

Engine *engine_new(struct App *app, uv_loop_t *loop);
/* Inside the caller's transaction: schedules a check of `variant_id` unless
 * one is already scheduled, or the variant has no subscription to check.
 * Returns 0 or STORE_ERROR. */
int engine_schedule_check(struct App *app, const char *variant_id);
/* Sets the timer to the earliest scheduled check (call after a commit that
 * scheduled one, and at start). */
void engine_rearm(Engine *e);
/* Runs the check of `variant_id` now, in a transaction of its own. Returns 0
 * or STORE_ERROR. */
int engine_run_check(struct App *app, const char *variant_id);
/* The variant's available quantity within a scope: `channel` NULL or "" for
 * unscoped (all its stock), else the channel's locations only (a variant
 * without inventory levels has one quantity in every scope). Returns 0 or
 * STORE_ERROR. */
int engine_scope_quantity(struct App *app, const Variant *v,
                          const char *channel, long long *quantity);
/* Stops the timer and frees the engine once it has closed. */
void engine_close(Engine *e);

#endif
