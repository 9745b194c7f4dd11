/* The restock engine: scheduled restock checks and the restock rule.
 *
 * A committed change that can raise a variant's quantity schedules a check
 * trigger_delay ms later, as a row written in the same unit
 * (engine_schedule_check); the unit's effects tell the engine when it is
 * due (engine_note_check), and one timer waits for the earliest. Due checks
 * run in a write unit of their own: each check in a savepoint, so that one
 * that fails is retried without undoing the others. At the check, each
 * scope whose quantity is above inventory_required has its subscriptions
 * moved to the history and its restock-notification.restocked events
 * written. One unit notifies at most ENGINE_CHUNK subscriptions; a larger
 * fan-out goes on in the next unit, the check staying scheduled until it is
 * done, so a crash between units notifies nobody twice and forgets nobody. */
#ifndef RESTOCKD_ENGINE_H
#define RESTOCKD_ENGINE_H

#include <uv.h>

#include "domain.h"

#define ENGINE_CHUNK 10000

typedef struct Engine Engine;

Engine *engine_new(Domain *d);
/* Reads when the first check is due and arms the timer (at start). */
void engine_start(Engine *e);
/* Another node wrote something (a wake-up from the store): looks for due
 * checks again, unless a unit is already running. A restock that node
 * started is then joined at once, not at the next heartbeat. */
void engine_poke(Engine *e);
/* A committed unit scheduled a check due at `due_ms`. */
void engine_note_check(Engine *e, long long due_ms);
/* Stops the timer and frees the engine once it has closed and no unit of
 * its own is in flight. */
void engine_close(Engine *e);

/* Inside a unit: schedules a check of `variant_id` trigger_delay ms from
 * now, unless one is already scheduled or the variant has no subscription
 * to check. */
int engine_schedule_check(StoreTx *tx, Unit *u, const char *variant_id);
/* The variant's available quantity within a scope: `channel` NULL or "" for
 * unscoped (all its stock), else the channel's locations only (a variant
 * without inventory levels has one quantity in every scope). */
int engine_scope_quantity(StoreTx *tx, const Variant *v, const char *channel,
                          long long *quantity);

#endif
