/* The PostgreSQL backend: its connections (libpq, loaded by pq_dl.c), its SQL
 * for every statement of store_sql.h, and the listener thread that wakes
 * the server when another node made deliveries due.
 *
 * Everything here runs on a storage thread (the writer, a reader, the
 * listener) or on the CLI's only thread, never on the event loop. Each
 * thread owns its connection. libpq is used without blocking: a statement
 * is sent, then the thread waits in poll() on the connection's socket with
 * a deadline, so that a server that stops answering (stopped, partitioned)
 * costs a unit a few seconds and a 503, never a hung writer.
 *
 * Statements are prepared once per session (PQprepare, named s1, s2, ...)
 * and run with text parameters; results are read as text. Those whose
 * answer nobody waits for (BEGIN, SAVEPOINT, RELEASE) are not sent alone:
 * they wait in libpq's pipeline and go with the next statement whose answer
 * is read, in one round trip. A connection that is lost is dropped and made
 * again by `ensure`, before the next transaction, with backoff; its
 * statements are prepared again on first use. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "pq_dl.h"
#include "store_driver.h"
#include "xmalloc.h"

extern const Migration postgres_migrations[];

/* How long a server's connection waits for one answer before it gives the
 * connection up (the unit then fails with a 503). Long statements of a
 * server are short: its work is chunked. The CLI waits as long as it takes
 * (a migration may build an index on a large table). */
#define IO_TIMEOUT_MS 5000
/* libpq's connect_timeout unless the URI sets its own, in seconds. */
#define CONNECT_TIMEOUT_S "3"
/* Reconnection backoff: doubled from the first to the last. */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
/* The advisory lock `migrations run` holds, one per schema: services in
 * schemas of their own in one database migrate without waiting for each
 * other. */
#define MIG_LOCK_KEY "hashtext('restockd migrations ' || current_schema())"
/* LISTENs on the channel the deliveries triggers of this schema notify
 * (migration 002): restockd_SCHEMA. */
#define LISTEN_SQL                                                            \
  "DO $$ BEGIN EXECUTE format('LISTEN %I', 'restockd_' || current_schema());" \
  " END $$"
/* How long a node's heartbeat keeps it alive for the others. */
#define LIVE "interval '10 seconds'"

/* ---- SQL ------------------------------------------------------------------
 */

/* Parameters are $1..$N, in the order store.c binds them (the same as
 * SQLite's ?1..?N), each cast where PostgreSQL could not infer its type.
 * Results have the columns of SQLite's statements, in the same order;
 * times are shown with restock_iso (migration 001). */

#define SUBSCRIBED_SQL "'restock-notification.subscribed'"
#define RESTOCKED_SQL "'restock-notification.restocked'"
/* The variant column of an event named N with data D (migration 011): V,
 * which restockd passes with each restocked event it writes, else read
 * from the data of a restocked event written by other means. */
#define EVENT_VARIANT(N, D, V)                                 \
  "CASE WHEN " N "::text = " RESTOCKED_SQL " THEN coalesce(" V \
  "::text,"                                                    \
  " " D "::json ->> 'variant_id') END"

/* The filters of the admin listings: $1 variant, $2 email, $3 channel, each
 * NULL for any. PostgreSQL plans each execution with its values (a custom
 * plan) while that is cheaper than a generic one, so one form serves every
 * filter. */
#define SUB_FILTER                               \
  " WHERE ($1::text IS NULL OR variant_id = $1)" \
  " AND ($2::text IS NULL OR email = $2)"        \
  " AND ($3::text IS NULL OR sales_channel_id = $3)"
/* Columns: id, variant_id, sales_channel_id, email, created_at, notified_at,
 * status, quantity, locale. */
#define SUB_LIST                                                             \
  "SELECT id, variant_id, sales_channel_id, email, restock_iso(created_at)," \
  " NULL::text, 'active', quantity, locale FROM "                            \
  "restock_subscriptions" SUB_FILTER                                         \
  " AND $4::text IS NULL ORDER BY id LIMIT $5 OFFSET $6"
#define PEND_LIST                                                            \
  "SELECT id, variant_id, sales_channel_id, email, restock_iso(created_at)," \
  " NULL::text, 'pending', quantity, locale FROM restock_pending" SUB_FILTER \
  " AND $4::text IS NULL ORDER BY id LIMIT $5 OFFSET $6"
#define PEND_COUNT \
  "SELECT count(*) FROM restock_pending" SUB_FILTER " AND $4::text IS NULL"
#define HIST_LIST                                                            \
  "SELECT id, variant_id, sales_channel_id, email, restock_iso(created_at)," \
  " restock_iso(notified_at), status, quantity, locale FROM "                \
  "restock_history" SUB_FILTER                                               \
  " AND status = $4::text ORDER BY id LIMIT $5 OFFSET $6"
#define SUB_COUNT                                         \
  "SELECT count(*) FROM restock_subscriptions" SUB_FILTER \
  " AND $4::text IS NULL"
#define HIST_COUNT \
  "SELECT count(*) FROM restock_history" SUB_FILTER " AND status = $4::text"

#define VARIANT_COLUMNS                                                  \
  "id, product_id, sku, title, inventory_quantity, allow_backorder,"     \
  " manage_inventory, restock_iso(created_at), restock_iso(updated_at)," \
  " EXISTS (SELECT 1 FROM inventory_levels l WHERE l.variant_id = v.id)"
/* $1 a prefix of id, sku or title (ASCII letters in any case: the columns
 * sort as "C"), $2 sold out (1) or in stock (0), each NULL for any. */
#define VARIANT_FILTER                                             \
  " WHERE ($1::text IS NULL OR starts_with(lower(id), lower($1))"  \
  " OR starts_with(lower(coalesce(sku, '')), lower($1))"           \
  " OR starts_with(lower(coalesce(title, '')), lower($1)))"        \
  " AND ($2::bigint IS NULL OR (CASE WHEN NOT manage_inventory OR" \
  " allow_backorder OR inventory_quantity > 0 THEN 0 ELSE 1 END) = $2)"

#define EVENT_COLUMNS                                   \
  "id, name, data::text, status, attempts, last_error," \
  " restock_iso(created_at)"

#define HISTORY_INSERT                                                \
  "INSERT INTO restock_history (variant_id, sales_channel_id, email," \
  " created_at, notified_at, subscribed_event_id, status, quantity,"  \
  " locale)"

/* The scope's subscriptions that want no more than $N units. */
#define WANTS_AT_MOST(N) " AND (quantity IS NULL OR quantity <= " N ")"

/* The export's pages: $2 the status ('active', 'pending', a history status,
 * or NULL for any), $3 the variant or NULL, $1 the last id read, $4 the
 * page's size. */
#define EXPORT_FILTER(status_test)                       \
  " WHERE id > $1 AND ($2::text IS NULL OR " status_test \
  ") AND"                                                \
  " ($3::text IS NULL OR variant_id = $3) ORDER BY id LIMIT $4"
#define EXPORT_COLUMNS \
  "id, variant_id, sales_channel_id, email, restock_iso(created_at)"

/* The notifications of a report: sent in [$1, $2), of variant $3 (NULL:
 * any). */
/* The route passes "" and "~" for a bound it was not given (every stored
 * time sorts between them in SQLite's text); here they are open bounds. */
#define REPORT_FILTER                                               \
  " FROM restock_history WHERE status = 'notified'"                 \
  " AND notified_at >= coalesce(nullif($1::text, '')::timestamptz," \
  " '-infinity') AND notified_at < coalesce(nullif($2::text, '~')"  \
  "::timestamptz, 'infinity') AND ($3::text IS NULL OR variant_id = $3)"

/* The deliveries this node may claim: those of a handler its plugin has
 * (parameter P, [[event, handler], ...]), and those of a handler no live
 * node has (they fail as on one node, "no handler of that name"), so that
 * none waits for ever. */
#define CLAIMABLE(P)                                                           \
  " AND ((e.name, d.handler) IN (SELECT x ->> 0, x ->> 1"                      \
  " FROM jsonb_array_elements(" P                                              \
  "::jsonb) x)"                                                                \
  " OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.last_seen_at > now() - " LIVE \
  " AND n.handlers @> jsonb_build_array(jsonb_build_array(e.name,"             \
  " d.handler))))"

/* The oldest $4 of a scope move to the history, notified at $5, and come
 * back oldest first, each saying whether the scope has more (rows past the
 * last one taken: the statement's snapshot still shows those it deletes).
 * That is the first such row in index order, not an EXISTS: PostgreSQL
 * plans an EXISTS as a scan from the table's start, which walks every row
 * the restock's earlier chunks deleted. SQL_SUB_TO_HISTORY and
 * SQL_SUB_DELETE_UPTO are not run (take_moves). */
// clang-format off
#define SUB_TAKE(COLS, KEY, AFTER, LOCK) \
  "WITH picked AS (SELECT " COLS " FROM restock_subscriptions" \
  " WHERE variant_id = $1 AND sales_channel_id = $2" WANTS_AT_MOST("$3") \
  AFTER " ORDER BY id LIMIT $4" LOCK ")," \
  " moved AS (DELETE FROM restock_subscriptions" \
  " WHERE " KEY " = ANY (ARRAY(SELECT " KEY " FROM picked)) RETURNING *)," \
  " kept AS (" HISTORY_INSERT \
  " SELECT variant_id, sales_channel_id, email, created_at, $5," \
  " subscribed_event_id, 'notified', quantity, locale FROM moved" \
  " ORDER BY id)" \
  " SELECT id, email, restock_iso(created_at), locale, quantity," \
  " (SELECT r.id FROM restock_subscriptions r" \
  " WHERE r.variant_id = $1 AND r.sales_channel_id = $2" \
  " AND (r.quantity IS NULL OR r.quantity <= $3)" \
  " AND r.id > (SELECT max(id) FROM picked)" \
  " ORDER BY r.variant_id, r.sales_channel_id, r.id LIMIT 1) IS NOT NULL" \
  " FROM moved ORDER BY id"
// clang-format on

static const char *const pg_sql[SQL_COUNT_] = {
    [SQL_BEGIN] = "BEGIN",
    /* A read unit sees one snapshot for all its statements (a count and
     * its listing agree), as a SQLite read transaction does. */
    [SQL_BEGIN_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_SAVEPOINT] = "SAVEPOINT u",
    [SQL_RELEASE] = "RELEASE SAVEPOINT u",
    [SQL_ROLLBACK_TO] = "ROLLBACK TO SAVEPOINT u",
    /* Several nodes may start at once: the table is created under the
     * lock `migrations run` holds, so that two creations never race. */
    [SQL_MIG_CREATE] =
        "DO $$ BEGIN PERFORM pg_advisory_xact_lock(" MIG_LOCK_KEY ");"
        " CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text COLLATE \"C\" PRIMARY KEY,"
        " applied_at timestamptz NOT NULL); END $$",
    /* restock_iso does not exist before the first migration. */
    [SQL_MIG_GET] =
        "SELECT to_char(applied_at AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM schema_migrations"
        " WHERE name = $1",
    [SQL_MIG_RECORD] =
        "INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)",
    /* Held by `migrations run` for its whole run: a second node migrating
     * at the same time waits, then finds nothing pending. */
    [SQL_MIG_LOCK] = "SELECT pg_advisory_lock(" MIG_LOCK_KEY ")",
    [SQL_MIG_UNLOCK] = "SELECT pg_advisory_unlock(" MIG_LOCK_KEY ")",
    [SQL_VARIANT_GET] = "SELECT " VARIANT_COLUMNS
                        " FROM variants v WHERE id = $1",
    /* A write that reads a variant locks it until its commit: the writes
     * of other nodes that depend on it (a subscribe's stock check, a
     * quantity change and the check it schedules) take turns, as they do
     * on SQLite's single writer. */
    [SQL_VARIANT_LOCK] = "SELECT " VARIANT_COLUMNS
                         " FROM variants v WHERE id = $1"
                         " FOR NO KEY UPDATE OF v",
    [SQL_VARIANT_PUT] =
        "INSERT INTO variants (id, product_id, sku, title,"
        " inventory_quantity, allow_backorder, manage_inventory, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (id) DO UPDATE SET product_id = EXCLUDED.product_id,"
        " sku = EXCLUDED.sku, title = EXCLUDED.title,"
        " inventory_quantity = EXCLUDED.inventory_quantity,"
        " allow_backorder = EXCLUDED.allow_backorder,"
        " manage_inventory = EXCLUDED.manage_inventory,"
        " created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
    [SQL_VARIANT_SET_QTY] =
        "UPDATE variants SET inventory_quantity = $2, updated_at = $3"
        " WHERE id = $1",
    [SQL_VARIANT_DELETE] = "DELETE FROM variants WHERE id = $1",
    [SQL_VARIANT_LIST] =
        "SELECT " VARIANT_COLUMNS
        ", (SELECT count(*) FROM restock_subscriptions s"
        " WHERE s.variant_id = v.id)"
        " FROM variants v" VARIANT_FILTER " ORDER BY id LIMIT $3 OFFSET $4",
    [SQL_VARIANT_COUNT] = "SELECT count(*) FROM variants v" VARIANT_FILTER,
    [SQL_SUB_NEXT_ID] = "SELECT nextval('restock_subscription_ids')",
    /* Never run: nextval records the id it gives (last_insert_id NULL). */
    [SQL_SUB_ID_TAKEN] = "SELECT 1 WHERE $1::bigint IS NULL",
    [SQL_EVENT_NEXT_ID] = "SELECT nextval('event_ids')",
    [SQL_SUB_INSERT] =
        "INSERT INTO restock_subscriptions"
        " (id, variant_id, sales_channel_id, email, created_at,"
        " subscribed_event_id, quantity, locale)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    [SQL_SUB_CREATED] =
        "SELECT restock_iso(created_at) FROM restock_subscriptions"
        " WHERE email = $3 AND variant_id = $1 AND sales_channel_id = $2",
    [SQL_SUB_REMOVE_ID] = "DELETE FROM restock_subscriptions WHERE id = $1",
    /* One form per listing: the three entries of each family are the
     * same statement. */
    [SQL_SUB_LIST] = SUB_LIST,
    [SQL_SUB_LIST_BY_EMAIL] = SUB_LIST,
    [SQL_SUB_LIST_BY_VARIANT] = SUB_LIST,
    [SQL_SUB_COUNT] = SUB_COUNT,
    [SQL_SUB_COUNT_BY_EMAIL] = SUB_COUNT,
    [SQL_SUB_COUNT_BY_VARIANT] = SUB_COUNT,
    [SQL_HIST_LIST] = HIST_LIST,
    [SQL_HIST_LIST_BY_EMAIL] = HIST_LIST,
    [SQL_HIST_LIST_BY_VARIANT] = HIST_LIST,
    [SQL_HIST_COUNT] = HIST_COUNT,
    [SQL_HIST_COUNT_BY_EMAIL] = HIST_COUNT,
    [SQL_HIST_COUNT_BY_VARIANT] = HIST_COUNT,
    [SQL_SUB_TOTAL] = "SELECT count(*) FROM restock_subscriptions",
    [SQL_SUB_ANY] =
        "SELECT 1 FROM restock_subscriptions WHERE variant_id = $1 LIMIT 1",
    /* A variant's scopes, one index probe each (a loose index scan):
     * DISTINCT walked every subscription of the variant, 33 ms at 100,000
     * on PostgreSQL, for each chunk of a restock. */
    [SQL_SUB_SCOPES] =
        "WITH RECURSIVE scope (c) AS (SELECT min(sales_channel_id)"
        " FROM restock_subscriptions WHERE variant_id = $1 UNION ALL"
        " SELECT (SELECT min(s.sales_channel_id) FROM restock_subscriptions s"
        " WHERE s.variant_id = $1 AND s.sales_channel_id > scope.c)"
        " FROM scope WHERE scope.c IS NOT NULL)"
        " SELECT c FROM scope WHERE c IS NOT NULL",
    [SQL_SUB_TAKE] = SUB_TAKE("id", "id", "", ""),
    /* A restock several nodes take at once (the engine's shared checks):
     * rows another take holds are skipped, not waited for, and only ids
     * past $6 (the last this check took) are looked at. The rows it picks
     * are locked, so that they are deleted where they lie (a TID scan: the
     * 1,000 index probes of a delete by id were an eighth of the
     * database's CPU in a restock); a row another transaction changed
     * before the lock is picked in its new place. */
    [SQL_SUB_TAKE_SHARED] = SUB_TAKE("id", "id", " AND id > $6",
                                     " FOR UPDATE SKIP LOCKED"),
    /* While set, the triggers of a take's two tables leave the demand
     * counts alone (migration 012): SQL_DEMAND_TAKEN adds the scope's
     * total once, at the end, and clears it. */
    [SQL_DEMAND_DEFER] = "SELECT set_config('restock.counts', 'deferred', true)",
    [SQL_DEMAND_TAKEN] =
        "WITH counted AS (SELECT set_config('restock.counts', '', true))"
        " INSERT INTO demand_counts (variant_id, sales_channel_id, notified)"
        " SELECT $1::text, $2::text, $3::bigint FROM counted"
        " ON CONFLICT (variant_id, sales_channel_id) DO UPDATE"
        " SET waiting = demand_counts.waiting - EXCLUDED.notified,"
        " notified = demand_counts.notified + EXCLUDED.notified",
    /* The first and last id of a scope (two index probes). */
    [SQL_SUB_SPAN] =
        "SELECT min(id), max(id) FROM restock_subscriptions"
        " WHERE variant_id = $1 AND sales_channel_id = $2",
    [SQL_SUB_TO_HISTORY] =
        HISTORY_INSERT
        " SELECT variant_id, sales_channel_id, email, created_at, $4,"
        " subscribed_event_id, 'notified', quantity, locale"
        " FROM restock_subscriptions"
        " WHERE variant_id = $1 AND sales_channel_id = $2 AND id <= $3"
        WANTS_AT_MOST("$5") " ORDER BY id",
    [SQL_SUB_DELETE_UPTO] =
        "DELETE FROM restock_subscriptions"
        " WHERE variant_id = $1 AND sales_channel_id = $2 AND id <= $3"
        WANTS_AT_MOST("$4"),
    /* In the scope index's order, for the same reason as the take's. */
    [SQL_SUB_SCOPE_ANY] =
        "SELECT 1 FROM restock_subscriptions"
        " WHERE variant_id = $1 AND sales_channel_id = $2" WANTS_AT_MOST("$3")
        " ORDER BY variant_id, sales_channel_id, id LIMIT 1",
    [SQL_SUB_CANCEL_VARIANT_HIST] =
        HISTORY_INSERT
        " SELECT variant_id, sales_channel_id, email, created_at, $2,"
        " subscribed_event_id, 'cancelled', quantity, locale"
        " FROM restock_subscriptions WHERE variant_id = $1 ORDER BY id",
    [SQL_SUB_CANCEL_VARIANT_DELETE] =
        "DELETE FROM restock_subscriptions WHERE variant_id = $1",
    [SQL_SUB_CANCEL_CHANNEL_HIST] =
        HISTORY_INSERT
        " SELECT variant_id, sales_channel_id, email, created_at, $2,"
        " subscribed_event_id, 'cancelled', quantity, locale"
        " FROM restock_subscriptions WHERE sales_channel_id = $1 ORDER BY id",
    [SQL_SUB_CANCEL_CHANNEL_DELETE] =
        "DELETE FROM restock_subscriptions WHERE sales_channel_id = $1",
    [SQL_HIST_VARIANTS] =
        "SELECT DISTINCT variant_id FROM restock_history"
        " WHERE email = $1 AND ($2::text IS NULL OR variant_id = $2)",
    /* The email leaves the emails of the variant's restocked events
     * (jsonb's ? is "has this string as an element"; the data is json,
     * migration 011, converted for this rare rewrite). */
    [SQL_EVENT_SCRUB_RESTOCKED] =
        "UPDATE events SET data = (SELECT jsonb_set(jsonb_set(d, '{emails}',"
        " coalesce((SELECT jsonb_agg(x ORDER BY n) FROM"
        " jsonb_array_elements(d -> 'emails') WITH ORDINALITY AS t(x, n)"
        " WHERE x <> to_jsonb($2::text)), '[]'::jsonb)), '{subscribers}',"
        " coalesce((SELECT jsonb_agg(x ORDER BY n) FROM"
        " jsonb_array_elements(coalesce(d -> 'subscribers', '[]'::jsonb))"
        " WITH ORDINALITY AS t(x, n) WHERE x ->> 'email' IS DISTINCT FROM $2),"
        " '[]'::jsonb), d ? 'subscribers')::json"
        " FROM (SELECT events.data::jsonb AS d) AS j)"
        " WHERE name = " RESTOCKED_SQL " AND variant_id = $1"
        " AND (data -> 'emails')::jsonb ? $2",
    [SQL_DELIVERY_SCRUB_SUBSCRIBER] =
        "DELETE FROM deliveries WHERE subscriber = $2 AND event_id IN"
        " (SELECT id FROM events WHERE name = " RESTOCKED_SQL
        " AND variant_id = $1) RETURNING event_id",
    [SQL_EVENT_ERASE_SUBSCRIBED] =
        "DELETE FROM events WHERE id IN ("
        " SELECT subscribed_event_id FROM restock_subscriptions"
        " WHERE email = $1 AND ($2::text IS NULL OR variant_id = $2)"
        " UNION SELECT subscribed_event_id FROM restock_history"
        " WHERE email = $1 AND ($2::text IS NULL OR variant_id = $2))",
    /* Events a plugin emitted whose data holds the email as a JSON string,
     * in any letter case. */
    [SQL_EVENT_EMITTED_WITH] =
        "SELECT id, data::text FROM events"
        " WHERE name <> " SUBSCRIBED_SQL " AND name NOT IN (" RESTOCKED_SQL
        ", 'product-variant.updated')"
        " AND strpos(lower(data::text), to_jsonb($1::text)::text) > 0",
    [SQL_EVENT_SET_DATA] = "UPDATE events SET data = $2::json WHERE id = $1",
    [SQL_SUB_ERASE] =
        "DELETE FROM restock_subscriptions"
        " WHERE email = $1 AND ($2::text IS NULL OR variant_id = $2)",
    [SQL_HIST_ERASE] =
        "DELETE FROM restock_history"
        " WHERE email = $1 AND ($2::text IS NULL OR variant_id = $2)",
    [SQL_CHECK_INSERT] =
        "INSERT INTO restock_checks (variant_id, due_at) VALUES ($1, $2)"
        " ON CONFLICT (variant_id) DO NOTHING",
    [SQL_CHECK_REPLACE] =
        "INSERT INTO restock_checks (variant_id, due_at) VALUES ($1, $2)"
        " ON CONFLICT (variant_id) DO UPDATE SET due_at = EXCLUDED.due_at",
    [SQL_CHECK_NEXT] = "SELECT min(due_at) FROM restock_checks",
    /* Each due check runs on one node: the row stays locked by the node
     * that claimed it until that node's transaction ends, and the others
     * skip it. */
    [SQL_CHECK_DUE] =
        "SELECT variant_id FROM restock_checks WHERE due_at <= $1"
        " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    [SQL_CHECK_DELETE] = "DELETE FROM restock_checks WHERE variant_id = $1",
    /* A check several nodes run at once (unthrottled, where the takes skip
     * each other's rows): not locked, and deleted only where no other
     * transaction holds it (a node still taking, a quantity change
     * scheduling it again) and it is not due later than $2. */
    [SQL_CHECK_DUE_SHARED] =
        "SELECT variant_id FROM restock_checks WHERE due_at <= $1"
        " ORDER BY due_at LIMIT $2",
    [SQL_CHECK_FINISH] =
        "DELETE FROM restock_checks WHERE variant_id IN (SELECT variant_id"
        " FROM restock_checks WHERE variant_id = $1 AND due_at <= $2"
        " FOR UPDATE SKIP LOCKED)",
    [SQL_CHECK_COUNT] = "SELECT count(*) FROM restock_checks",
    [SQL_EVENT_INSERT] =
        "INSERT INTO events (id, name, data, status, created_at, variant_id)"
        " VALUES ($1, $2, $3::json, $4, $5, " EVENT_VARIANT("$2", "$3", "$6")
        ")",
    [SQL_EVENT_INSERT_AUTO] =
        "INSERT INTO events (name, data, status, created_at, variant_id)"
        " VALUES ($1, $2::json, $3, $4, " EVENT_VARIANT("$1", "$2", "$5")
        ") RETURNING id",
    [SQL_SUB_SET_EVENT] =
        "UPDATE restock_subscriptions SET subscribed_event_id = $2"
        " WHERE id = $1",
    [SQL_DELIVERY_INSERT] =
        "INSERT INTO deliveries (event_id, handler, subscriber, max_attempts,"
        " next_at, updated_at, data)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::json)",
    /* Claims and leases in one statement: the due rows this node may run,
     * oldest due first, locked so that no other node claims them at the
     * same time (SKIP LOCKED: it takes the next ones instead), each leased
     * until $3 in node $4's name. */
    [SQL_DELIVERY_DUE] =
        "WITH due AS (SELECT d.event_id, d.handler, d.subscriber,"
        " d.next_at FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.status = 'pending' AND d.next_at <= $1" CLAIMABLE("$5")
        " ORDER BY d.next_at, d.event_id LIMIT $2"
        " FOR UPDATE OF d SKIP LOCKED),"
        " leased AS (UPDATE deliveries d SET next_at = $3, lease_owner = $4"
        " FROM due WHERE d.event_id = due.event_id"
        " AND d.handler = due.handler AND d.subscriber = due.subscriber"
        " RETURNING d.event_id, d.handler, d.subscriber, d.attempts,"
        " d.max_attempts, d.data, due.next_at AS was)"
        " SELECT l.event_id, l.handler, l.subscriber, l.attempts,"
        " l.max_attempts, e.name, coalesce(l.data, e.data)::text FROM leased l"
        " JOIN events e ON e.id = l.event_id ORDER BY l.was, l.event_id",
    /* Not run: DELIVERY_DUE leases (claim_leases). */
    [SQL_DELIVERY_LEASE] =
        "UPDATE deliveries SET next_at = $4, lease_owner = $5"
        " WHERE event_id = $1 AND handler = $2 AND subscriber = $3",
    [SQL_DELIVERY_FINISH] =
        "UPDATE deliveries SET status = $4, attempts = $5, next_at = $6,"
        " last_error = coalesce($7, last_error), updated_at = $8,"
        " lease_owner = NULL"
        " WHERE event_id = $1 AND handler = $2 AND subscriber = $3"
        " AND lease_owner = $9",
    /* After SQL_EVENT_LOCK: the subqueries then see every delivery that
     * another node finished before it let go of the event's row. */
    [SQL_EVENT_REFRESH] =
        "UPDATE events SET"
        " status = CASE"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = $1"
        "               AND status = 'pending') THEN 'pending'"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = $1"
        "               AND status = 'dead') THEN 'dead'"
        "  ELSE 'delivered' END,"
        " attempts = (SELECT coalesce(max(attempts), 0) FROM deliveries"
        "             WHERE event_id = $1),"
        " last_error = coalesce($2::text, last_error)"
        " WHERE id = $1",
    [SQL_EVENT_LOCK] = "SELECT 1 FROM events WHERE id = $1 FOR UPDATE",
    /* As SQLite's (migration 008 has the index); the row is locked first
     * (SQL_EVENT_LOCK), so two nodes' outcomes are counted in turn. */
    [SQL_EVENT_FINISH] =
        "UPDATE events SET status = n.status,"
        " attempts = GREATEST(events.attempts, $3::bigint),"
        " last_error = coalesce($2::text, last_error)"
        " FROM (SELECT CASE"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = $1"
        "               AND status = 'pending') THEN 'pending'"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = $1"
        "               AND status = 'dead') THEN 'dead'"
        "  ELSE 'delivered' END AS status) AS n"
        " WHERE events.id = $1 AND (events.status IS DISTINCT FROM n.status"
        " OR events.attempts < $3::bigint OR $2::text IS NOT NULL)",

    /* The earliest delivery this node could claim: one it cannot run is
     * another node's to wait for. In due order on deliveries_due, so that
     * the walk stops at the first (not min() over every pending row). */
    [SQL_DELIVERY_NEXT] =
        "SELECT d.next_at FROM deliveries d JOIN events e"
        " ON e.id = d.event_id WHERE d.status = 'pending'" CLAIMABLE("$1")
        " ORDER BY d.next_at LIMIT 1",
    [SQL_DELIVERY_RELEASE] =
        "UPDATE deliveries SET next_at = $2, lease_owner = NULL"
        " WHERE status = 'pending' AND lease_owner = $1",
    [SQL_DELIVERY_RELEASE_ALL] =
        "UPDATE deliveries SET next_at = $1, lease_owner = NULL"
        " WHERE status = 'pending' AND lease_owner IS NOT NULL",
    [SQL_DELIVERY_RENEW] =
        "UPDATE deliveries SET next_at = $2"
        " WHERE lease_owner = $1 AND status = 'pending'",
    [SQL_DELIVERY_OWNERS] =
        "SELECT DISTINCT lease_owner FROM deliveries"
        " WHERE lease_owner IS NOT NULL",
    [SQL_DELIVERY_PENDING] =
        "SELECT count(*) FROM deliveries WHERE status = 'pending'",
    [SQL_EVENT_LIST] =
        "SELECT " EVENT_COLUMNS " FROM events"
        " WHERE ($1::text IS NULL OR name = $1)"
        " AND ($2::text IS NULL OR status = $2) ORDER BY id LIMIT $3 OFFSET $4",
    [SQL_EVENT_COUNT] =
        "SELECT count(*) FROM events WHERE ($1::text IS NULL OR name = $1)"
        " AND ($2::text IS NULL OR status = $2)",
    /* The literal conditions match the partial indexes events_open and
     * events_named. */
    [SQL_EVENT_LIST_OPEN] =
        "SELECT " EVENT_COLUMNS " FROM events"
        " WHERE ($1::text IS NULL OR name = $1) AND status = $2"
        " AND status <> 'delivered' ORDER BY id LIMIT $3 OFFSET $4",
    [SQL_EVENT_COUNT_OPEN] =
        "SELECT count(*) FROM events WHERE ($1::text IS NULL OR name = $1)"
        " AND status = $2 AND status <> 'delivered'",
    [SQL_EVENT_LIST_NAMED] =
        "SELECT " EVENT_COLUMNS " FROM events WHERE name = $1 AND name <> "
        SUBSCRIBED_SQL " AND ($2::text IS NULL OR status = $2)"
        " ORDER BY id LIMIT $3 OFFSET $4",
    [SQL_EVENT_COUNT_NAMED] =
        "SELECT count(*) FROM events WHERE name = $1 AND name <> "
        SUBSCRIBED_SQL " AND ($2::text IS NULL OR status = $2)",
    /* The deliveries of the events whose ids $1 lists (JSON), by event. */
    [SQL_EVENT_DELIVERIES] =
        "SELECT event_id, handler, subscriber, status, attempts, max_attempts,"
        " last_error, restock_iso(updated_at) FROM deliveries"
        " WHERE event_id = ANY (ARRAY(SELECT jsonb_array_elements_text("
        "$1::jsonb)::bigint)) ORDER BY event_id, seq",
    [SQL_EVENT_EXISTS] = "SELECT 1 FROM events WHERE id = $1",
    [SQL_EVENT_RETRY] =
        "UPDATE deliveries SET status = 'pending', attempts = 0,"
        " next_at = $2, updated_at = $3, lease_owner = NULL"
        " WHERE event_id = $1 AND status = 'dead'",
    [SQL_EVENT_SCAN] =
        "SELECT id, status, restock_iso(created_at) FROM events WHERE id > $1"
        " ORDER BY id LIMIT $2",
    [SQL_EVENT_DELETE] = "DELETE FROM events WHERE id = $1",
    [SQL_LOCATION_UPSERT] =
        "INSERT INTO stock_locations (id, name, created_at, updated_at)"
        " VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO UPDATE SET"
        " name = CASE WHEN $4::boolean THEN EXCLUDED.name"
        " ELSE stock_locations.name END, updated_at = EXCLUDED.updated_at",
    [SQL_LOCATION_GET] =
        "SELECT id, name, restock_iso(created_at), restock_iso(updated_at)"
        " FROM stock_locations WHERE id = $1",
    [SQL_LOCATION_DELETE] = "DELETE FROM stock_locations WHERE id = $1",
    [SQL_LOCATION_VARIANTS] =
        "SELECT DISTINCT variant_id FROM inventory_levels"
        " WHERE location_id = $1 ORDER BY variant_id",
    [SQL_LEVELS_DELETE_LOCATION] =
        "DELETE FROM inventory_levels WHERE location_id = $1",
    [SQL_LEVELS_DELETE_VARIANT] =
        "DELETE FROM inventory_levels WHERE variant_id = $1",
    [SQL_CHANNEL_LOC_DELETE_LOCATION] =
        "DELETE FROM sales_channel_locations WHERE location_id = $1",
    [SQL_CHANNEL_UPSERT] =
        "INSERT INTO sales_channels (id, name, created_at, updated_at)"
        " VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO UPDATE SET"
        " name = CASE WHEN $4::boolean THEN EXCLUDED.name"
        " ELSE sales_channels.name END, updated_at = EXCLUDED.updated_at",
    [SQL_CHANNEL_GET] =
        "SELECT id, name, restock_iso(created_at), restock_iso(updated_at)"
        " FROM sales_channels WHERE id = $1",
    [SQL_CHANNEL_DELETE] = "DELETE FROM sales_channels WHERE id = $1",
    [SQL_CHANNEL_LOCATIONS] =
        "SELECT location_id FROM sales_channel_locations"
        " WHERE sales_channel_id = $1 ORDER BY location_id",
    [SQL_CHANNEL_LOC_CLEAR] =
        "DELETE FROM sales_channel_locations WHERE sales_channel_id = $1",
    [SQL_CHANNEL_LOC_ADD] =
        "INSERT INTO sales_channel_locations (sales_channel_id, location_id)"
        " VALUES ($1, $2) ON CONFLICT DO NOTHING",
    [SQL_CHANNEL_LEVELS] =
        "SELECT l.stocked_quantity, l.reserved_quantity"
        " FROM inventory_levels l JOIN sales_channel_locations c"
        " ON c.location_id = l.location_id"
        " WHERE l.variant_id = $1 AND c.sales_channel_id = $2",
    [SQL_LEVEL_GET] =
        "SELECT stocked_quantity, reserved_quantity FROM inventory_levels"
        " WHERE variant_id = $1 AND location_id = $2",
    [SQL_LEVEL_UPSERT] =
        "INSERT INTO inventory_levels (variant_id, location_id,"
        " stocked_quantity, reserved_quantity, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $5)"
        " ON CONFLICT (variant_id, location_id) DO UPDATE SET"
        " stocked_quantity = EXCLUDED.stocked_quantity,"
        " reserved_quantity = EXCLUDED.reserved_quantity,"
        " updated_at = EXCLUDED.updated_at"
        " RETURNING variant_id, location_id, stocked_quantity,"
        " reserved_quantity, restock_iso(created_at), restock_iso(updated_at)",
    [SQL_LEVEL_LIST_VARIANT] =
        "SELECT variant_id, location_id, stocked_quantity, reserved_quantity,"
        " restock_iso(created_at), restock_iso(updated_at)"
        " FROM inventory_levels WHERE variant_id = $1 ORDER BY location_id",
    [SQL_LEVEL_LIST_LOCATION] =
        "SELECT variant_id, location_id, stocked_quantity, reserved_quantity,"
        " restock_iso(created_at), restock_iso(updated_at)"
        " FROM inventory_levels WHERE location_id = $1 ORDER BY variant_id",
    [SQL_KEY_UPSERT] =
        "INSERT INTO publishable_api_keys (id, created_at, updated_at)"
        " VALUES ($1, $2, $2) ON CONFLICT (id) DO UPDATE SET"
        " updated_at = EXCLUDED.updated_at",
    [SQL_KEY_GET] =
        "SELECT id, NULL::text, restock_iso(created_at),"
        " restock_iso(updated_at) FROM publishable_api_keys WHERE id = $1",
    [SQL_KEY_CHANNELS] =
        "SELECT sales_channel_id FROM publishable_api_key_channels"
        " WHERE key_id = $1 ORDER BY sales_channel_id",
    [SQL_KEY_CLEAR] =
        "DELETE FROM publishable_api_key_channels WHERE key_id = $1",
    [SQL_KEY_ADD] =
        "INSERT INTO publishable_api_key_channels (key_id, sales_channel_id)"
        " VALUES ($1, $2) ON CONFLICT DO NOTHING",
    [SQL_KEY_DELETE] = "DELETE FROM publishable_api_keys WHERE id = $1",
    [SQL_KEY_CHANNEL_DELETE_CHANNEL] =
        "DELETE FROM publishable_api_key_channels WHERE sales_channel_id = $1",
    [SQL_VARIANTS_TO_CHECK] =
        "SELECT DISTINCT l.variant_id FROM inventory_levels l"
        " WHERE l.location_id = $1 AND EXISTS (SELECT 1 FROM"
        " restock_subscriptions s WHERE s.variant_id = l.variant_id"
        " AND s.sales_channel_id = $2)",
    [SQL_LOCATION_LIST] =
        "SELECT id, name, restock_iso(created_at), restock_iso(updated_at)"
        " FROM stock_locations ORDER BY id LIMIT $1 OFFSET $2",
    [SQL_LOCATION_COUNT] = "SELECT count(*) FROM stock_locations",
    [SQL_CHANNEL_LIST] =
        "SELECT id, name, restock_iso(created_at), restock_iso(updated_at)"
        " FROM sales_channels ORDER BY id LIMIT $1 OFFSET $2",
    [SQL_CHANNEL_COUNT] = "SELECT count(*) FROM sales_channels",
    [SQL_KEY_LIST] =
        "SELECT id, NULL::text, restock_iso(created_at),"
        " restock_iso(updated_at) FROM publishable_api_keys"
        " ORDER BY id LIMIT $1 OFFSET $2",
    [SQL_KEY_COUNT] = "SELECT count(*) FROM publishable_api_keys",
    [SQL_META_GET] = "SELECT value FROM meta WHERE key = $1",
    [SQL_META_PUT] =
        "INSERT INTO meta (key, value) VALUES ($1, $2)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    [SQL_META_ADD] =
        "INSERT INTO meta (key, value) VALUES ($1, $2)"
        " ON CONFLICT (key) DO NOTHING",
    /* A node's heartbeat: its row, by the database's clock; nodes not seen
     * for a day go. */
    [SQL_NODE_BEAT] =
        "WITH gone AS (DELETE FROM nodes"
        " WHERE last_seen_at < now() - interval '1 day')"
        " INSERT INTO nodes (id, started_at, last_seen_at, version, handlers)"
        " VALUES ($1, $2, now(), $3, $4::jsonb) ON CONFLICT (id) DO UPDATE"
        " SET last_seen_at = now(), started_at = EXCLUDED.started_at,"
        " version = EXCLUDED.version, handlers = EXCLUDED.handlers",
    [SQL_NODE_LIST] =
        "SELECT id, restock_iso(started_at), restock_iso(last_seen_at),"
        " version FROM nodes ORDER BY id",
    /* The handlers of the other live nodes. */
    [SQL_NODE_PEERS] =
        "SELECT handlers::text FROM nodes WHERE id <> $1"
        " AND last_seen_at > now() - " LIVE " ORDER BY id",
    [SQL_NODE_DELETE] = "DELETE FROM nodes WHERE id = $1",
    /* $1 subscription ids, in order. */
    [SQL_IDS_RESERVE] =
        "SELECT nextval('restock_subscription_ids')"
        " FROM generate_series(1, $1::int)",
    /* A group's unscoped subscribes in one statement ($1, a JSON array of
     * rows {i, id, v, e, now, data, h}; $2 the deliveries' due time): each
     * is judged on its variant (locked FOR SHARE, so a quantity change on
     * another node waits for this commit, or is seen), added unless
     * subscribed already, and a new one gets its subscribed event (its id
     * taken here, in row order) and one delivery per handler, as
     * subscribe_fn does step by step. Rows come back as (i, verdict,
     * created_at), the verdict a SubscribeVerdict; then $3 rows (-1, 0,
     * NULL, subscription id) of ids reserved for the next batch. */
    [SQL_SUBSCRIBE_MANY] =
        "WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x("
        " i int, id bigint, v text, e text, now timestamptz, data text,"
        " h text)),"
        " stock AS (SELECT v.id, NOT v.manage_inventory OR v.allow_backorder"
        " OR v.inventory_quantity > 0 AS in_stock FROM variants v"
        " WHERE v.id = ANY (ARRAY(SELECT DISTINCT input.v FROM input))"
        " ORDER BY v.id FOR SHARE),"
        " judged AS (SELECT input.*, CASE WHEN stock.id IS NULL THEN 1"
        " WHEN stock.in_stock THEN 2 WHEN EXISTS (SELECT 1 FROM"
        " restock_pending p WHERE p.email = input.e AND p.variant_id = input.v"
        " AND p.sales_channel_id = '') THEN 4 ELSE 0 END AS verdict FROM input"
        " LEFT JOIN stock ON stock.id = input.v),"
        " added AS (INSERT INTO restock_subscriptions (id, variant_id,"
        " sales_channel_id, email, created_at, subscribed_event_id)"
        " SELECT id, v, '', e, now, nextval('event_ids') FROM (SELECT * FROM"
        " judged WHERE verdict = 0 ORDER BY i) o ON CONFLICT DO NOTHING"
        " RETURNING id, subscribed_event_id AS eid),"
        " written AS (INSERT INTO events (id, name, data, status, created_at)"
        " SELECT a.eid, " SUBSCRIBED_SQL ", j.data::json,"
        " CASE WHEN jsonb_array_length(j.h::jsonb) > 0 THEN 'pending'"
        " ELSE 'delivered' END, j.now FROM judged j"
        " JOIN added a ON a.id = j.id ORDER BY j.i RETURNING id),"
        " queued AS (INSERT INTO deliveries (event_id, handler, subscriber,"
        " max_attempts, next_at, updated_at)"
        " SELECT a.eid, d ->> 0, '', (d ->> 1)::int, $2, j.now"
        " FROM judged j JOIN added a ON a.id = j.id,"
        " jsonb_array_elements(j.h::jsonb) d ORDER BY j.i)"
        " SELECT j.i, CASE WHEN j.verdict <> 0 THEN j.verdict"
        " WHEN a.id IS NOT NULL THEN 0 ELSE 3 END,"
        /* The subscription that was there already: looked up by its key,
         * row by row (a join would be planned as a walk of the table). */
        " restock_iso(coalesce(CASE WHEN a.id IS NULL AND j.verdict = 0"
        " THEN (SELECT s.created_at FROM restock_subscriptions s"
        " WHERE s.email = j.e AND s.variant_id = j.v"
        " AND s.sales_channel_id = '') END, j.now)), NULL::bigint"
        " FROM judged j LEFT JOIN added a ON a.id = j.id"
        " UNION ALL SELECT -1, 0, NULL, nextval('restock_subscription_ids')"
        " FROM generate_series(1, $3::int)",
    /* ---- the subscription's life (issue 15; migration 003) ---- */
    [SQL_SUB_FIND] =
        "SELECT id, restock_iso(created_at) FROM restock_subscriptions"
        " WHERE email = $3 AND variant_id = $1 AND sales_channel_id = $2",
    /* A wish given replaces the stored one; one not given keeps it. */
    [SQL_SUB_SET_WISH] =
        "UPDATE restock_subscriptions SET"
        " quantity = coalesce($2::bigint, quantity),"
        " locale = coalesce($3::text, locale) WHERE id = $1",
    [SQL_PEND_FIND] =
        "SELECT id, restock_iso(created_at), confirm_sent_at"
        " FROM restock_pending"
        " WHERE email = $3 AND variant_id = $1 AND sales_channel_id = $2",
    [SQL_PEND_INSERT] =
        "INSERT INTO restock_pending (id, variant_id, sales_channel_id, email,"
        " created_at, quantity, locale, confirm_sent_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    [SQL_PEND_SET_WISH] =
        "UPDATE restock_pending SET quantity = coalesce($2::bigint, quantity),"
        " locale = coalesce($3::text, locale) WHERE id = $1",
    [SQL_PEND_SET_SENT] =
        "UPDATE restock_pending SET confirm_sent_at = $2 WHERE id = $1",
    [SQL_PEND_GET] =
        "SELECT variant_id, sales_channel_id, email, coalesce(locale, ''),"
        " coalesce(quantity, 0) FROM restock_pending WHERE id = $1",
    [SQL_PEND_ACTIVATE] =
        "INSERT INTO restock_subscriptions (id, variant_id, sales_channel_id,"
        " email, created_at, subscribed_event_id, quantity, locale)"
        " SELECT id, variant_id, sales_channel_id, email, $2, $3, quantity,"
        " locale FROM restock_pending WHERE id = $1",
    [SQL_PEND_DELETE] = "DELETE FROM restock_pending WHERE id = $1",
    [SQL_SUB_EXISTS_ID] =
        "SELECT variant_id, sales_channel_id, email, coalesce(locale, ''),"
        " coalesce(quantity, 0) FROM restock_subscriptions WHERE id = $1",
    [SQL_PEND_SCAN] =
        "SELECT id, restock_iso(created_at) FROM restock_pending"
        " ORDER BY id LIMIT $1",
    [SQL_SUB_SCAN] =
        "SELECT id, restock_iso(created_at) FROM restock_subscriptions"
        " ORDER BY id LIMIT $1",
    [SQL_SUB_EXPIRE_HIST] =
        HISTORY_INSERT
        " SELECT variant_id, sales_channel_id, email, created_at, $2,"
        " subscribed_event_id, 'expired', quantity, locale"
        " FROM restock_subscriptions WHERE id = $1",
    [SQL_PEND_LIST] = PEND_LIST,
    [SQL_PEND_LIST_BY_EMAIL] = PEND_LIST,
    [SQL_PEND_LIST_BY_VARIANT] = PEND_LIST,
    [SQL_PEND_COUNT] = PEND_COUNT,
    [SQL_PEND_COUNT_BY_EMAIL] = PEND_COUNT,
    [SQL_PEND_COUNT_BY_VARIANT] = PEND_COUNT,
    [SQL_PEND_ERASE] =
        "DELETE FROM restock_pending"
        " WHERE email = $1 AND ($2::text IS NULL OR variant_id = $2)",
    [SQL_PEND_CANCEL_VARIANT] =
        "DELETE FROM restock_pending WHERE variant_id = $1",
    [SQL_PEND_CANCEL_CHANNEL] =
        "DELETE FROM restock_pending WHERE sales_channel_id = $1",
    /* Through events_confirm_email (migration 003). */
    [SQL_EVENT_ERASE_CONFIRM] =
        "DELETE FROM events"
        " WHERE name = 'restock-notification.confirmation_requested'"
        " AND data ->> 'email' = $1"
        " AND ($2::text IS NULL OR data ->> 'variant_id' = $2)",
    [SQL_EMAIL_KNOWN] =
        "SELECT EXISTS (SELECT 1 FROM restock_subscriptions WHERE email = $1)"
        " OR EXISTS (SELECT 1 FROM restock_pending WHERE email = $1)"
        " OR EXISTS (SELECT 1 FROM restock_history WHERE email = $1)",
    [SQL_EXPORT_ACTIVE] =
        "SELECT " EXPORT_COLUMNS ", NULL::text, 'active', quantity, locale"
        " FROM restock_subscriptions" EXPORT_FILTER("$2 = 'active'"),
    [SQL_EXPORT_PENDING] =
        "SELECT " EXPORT_COLUMNS ", NULL::text, 'pending', quantity, locale"
        " FROM restock_pending" EXPORT_FILTER("$2 = 'pending'"),
    [SQL_EXPORT_HIST] =
        "SELECT " EXPORT_COLUMNS ", restock_iso(notified_at), status,"
        " quantity, locale FROM restock_history" EXPORT_FILTER("status = $2"),
    /* ---- shop connectors (issue 16; migration 004) ---- */
    [SQL_KV_GET] =
        "SELECT value FROM script_kv WHERE key = $1"
        " AND (expires_at IS NULL OR expires_at > $2)",
    [SQL_KV_PUT] =
        "INSERT INTO script_kv (key, value, expires_at, updated_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET"
        " value = EXCLUDED.value, expires_at = EXCLUDED.expires_at,"
        " updated_at = EXCLUDED.updated_at",
    [SQL_KV_DELETE] = "DELETE FROM script_kv WHERE key = $1",
    [SQL_KV_SWEEP] =
        "DELETE FROM script_kv WHERE key IN (SELECT key FROM script_kv"
        " WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)",
    /* Taken when free, run out, or this node's already; the rows changed
     * say whether this node holds it now (migration 002's table). */
    [SQL_LEASE_CLAIM] =
        "INSERT INTO task_leases (name, owner, lease_until)"
        " VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET"
        " owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until"
        " WHERE task_leases.owner = EXCLUDED.owner"
        " OR task_leases.lease_until <= $4",
    [SQL_LEASE_RELEASE] =
        "UPDATE task_leases SET lease_until = 0"
        " WHERE name = $1 AND owner = $2",
    [SQL_ORDER_INSERT] =
        "INSERT INTO shop_orders (order_id, created_at, recorded_at)"
        " VALUES ($1, $2, $3) ON CONFLICT (order_id) DO NOTHING",
    [SQL_CONVERSION_CANDIDATE] =
        "SELECT id FROM restock_history WHERE email = $1 AND variant_id = $2"
        " AND status = 'notified' AND converted_at IS NULL"
        " AND notified_at >= $3::timestamptz"
        " AND notified_at <= $4::timestamptz"
        " ORDER BY notified_at DESC, id DESC LIMIT 1",
    [SQL_CONVERSION_MARK] =
        "UPDATE restock_history SET converted_at = $2,"
        " conversion_order_id = $3, conversion_currency = $4,"
        " conversion_amount = $5 WHERE id = $1 AND converted_at IS NULL",
    [SQL_REPORT_TOTALS] = "SELECT count(*), count(converted_at)" REPORT_FILTER,
    [SQL_REPORT_REVENUE] =
        "SELECT conversion_currency, sum(conversion_amount)" REPORT_FILTER
        " AND converted_at IS NOT NULL GROUP BY conversion_currency"
        " ORDER BY conversion_currency COLLATE \"C\"",
    [SQL_REPORT_VARIANT_COUNT] =
        "SELECT count(DISTINCT variant_id)" REPORT_FILTER,
    [SQL_REPORT_VARIANTS] =
        "SELECT variant_id, count(*), count(converted_at)" REPORT_FILTER
        " GROUP BY variant_id"
        " ORDER BY count(converted_at) DESC, count(*) DESC, variant_id"
        " LIMIT $4 OFFSET $5",
    /* ---- the web console (issue 17; migration 005) ---- */
    [SQL_SESSION_INSERT] =
        "INSERT INTO admin_sessions (selector, validator_hash, created_at,"
        " expires_at) VALUES ($1, $2, $3, $4)",
    [SQL_SESSION_GET] =
        "SELECT validator_hash, expires_at FROM admin_sessions"
        " WHERE selector = $1 AND expires_at > $2",
    [SQL_SESSION_DELETE] = "DELETE FROM admin_sessions WHERE selector = $1",
    [SQL_SESSION_PRUNE] = "DELETE FROM admin_sessions WHERE expires_at <= $1",
    /* Ranked by the counts migration 005's triggers keep. Columns: the
     * variant's, then waiting, notified, oldest waiting, converted. */
    [SQL_DEMAND_LIST] =
        "SELECT " VARIANT_COLUMNS ", d.waiting, d.notified,"
        " restock_iso((SELECT min((SELECT s.created_at"
        "   FROM restock_subscriptions s WHERE s.variant_id = c.variant_id"
        "   AND s.sales_channel_id = c.sales_channel_id"
        "   ORDER BY s.id LIMIT 1))"
        "  FROM demand_counts c WHERE c.variant_id = d.variant_id"
        "  AND c.waiting > 0)), d.converted"
        " FROM (SELECT variant_id, sum(waiting) AS waiting,"
        "  sum(notified) AS notified, sum(converted) AS converted"
        "  FROM demand_counts GROUP BY variant_id"
        "  HAVING sum(waiting) > 0 ORDER BY 2 DESC, 1 LIMIT $1 OFFSET $2) d"
        " JOIN variants v ON v.id = d.variant_id"
        " ORDER BY d.waiting DESC, d.variant_id",
    [SQL_DEMAND_COUNT] =
        "SELECT count(DISTINCT variant_id) FROM demand_counts"
        " WHERE waiting > 0",
    [SQL_DEMAND_LIST_CHANNEL] =
        "SELECT " VARIANT_COLUMNS ", d.waiting, d.notified,"
        " restock_iso((SELECT s.created_at FROM restock_subscriptions s"
        "  WHERE s.variant_id = d.variant_id"
        "  AND s.sales_channel_id = d.sales_channel_id"
        "  ORDER BY s.id LIMIT 1)), d.converted"
        " FROM (SELECT variant_id, sales_channel_id, waiting, notified,"
        "  converted FROM demand_counts"
        "  WHERE sales_channel_id = $1 AND waiting > 0"
        "  ORDER BY waiting DESC, variant_id LIMIT $2 OFFSET $3) d"
        " JOIN variants v ON v.id = d.variant_id"
        " ORDER BY d.waiting DESC, d.variant_id",
    [SQL_DEMAND_COUNT_CHANNEL] =
        "SELECT count(*) FROM demand_counts"
        " WHERE sales_channel_id = $1 AND waiting > 0",
    /* A variant's restocked events, through events_restocked_variant. */
    [SQL_EVENT_LIST_VARIANT] =
        "SELECT " EVENT_COLUMNS " FROM events WHERE name = " RESTOCKED_SQL
        " AND variant_id = $1 AND ($2::text IS NULL OR status = $2)"
        " ORDER BY id LIMIT $3 OFFSET $4",
    [SQL_EVENT_COUNT_VARIANT] =
        "SELECT count(*) FROM events WHERE name = " RESTOCKED_SQL
        " AND variant_id = $1 AND ($2::text IS NULL OR status = $2)",
};

/* ---- connections ------------------------------------------------------------
 */

struct StoreConn {
  PGconn *pg; /* NULL while lost */
  char *uri;
  ConnRole role;
  const char *app;     /* application_name, as pg_stat_activity shows it */
  int timeout_ms;      /* per answer; 0 waits for ever (the CLI) */
  unsigned generation; /* sessions so far: statements prepare per session */
  unsigned next_name;
  Durability durability;
  uint64_t retry_at_ns; /* no reconnection before */
  int backoff_ms;
  bool was_lost;  /* logged; "reconnected" is logged once it is back */
  char node[160]; /* the writer's node (restockd.node), "" for none */
  int deferred;   /* statements sent in pipeline mode, answers not read */
  bool transient; /* the last failure may pass if tried again */
  char sqlstate[6];
  char err[512];
  unsigned long long round_trips; /* atomic */
};

struct StoreStmt {
  StoreConn *c;
  char *sql;
  char name[16];
  unsigned prepared; /* the session it is prepared in; 0: none */
  bool deferrable;   /* sent with the next statement (see above) */
  int nparams;
  char **values; /* nparams, owned */
  PGresult *res;
  int row, nrows;
  bool ran;
  bool sent; /* started by pg_send: the next step reads its answer */
  long long changes;
};

static void set_err(StoreConn *c, const char *msg) {
  snprintf(c->err, sizeof c->err, "%s", msg ? msg : "unknown error");
  /* libpq's messages end with a line break; a log line must not. */
  size_t n = strlen(c->err);
  while (n > 0 && (c->err[n - 1] == '\n' || c->err[n - 1] == ' '))
    c->err[--n] = '\0';
  for (char *p = c->err; *p; p++)
    if (*p == '\n') *p = ' ';
}

/* Notices (a NOTICE that a table already exists, say) are not errors. */
static void on_notice(void *arg, const char *message) {
  log_debug("postgresql: %s", message);
}

/* Drops a connection that cannot go on (lost, or silent past its
 * deadline): what it had open is rolled back by the server. */
static void drop(StoreConn *c, const char *why) {
  /* `why` may be libpq's own message, which PQfinish frees. */
  char msg[sizeof c->err];
  snprintf(msg, sizeof msg, "%s", why ? why : "the connection was lost");
  if (c->pg) pq_dl.finish(c->pg);
  c->pg = NULL;
  c->deferred = 0;
  c->transient = true;
  memcpy(c->sqlstate, "08006", 6);
  set_err(c, msg);
}

static bool is_transient_state(const char *state) {
  /* Class 08: connection exceptions; 40: serialization failures and
   * deadlocks; 53: insufficient resources; 57P: the server shutting down
   * or restarting; 55P03: a lock not available. */
  return strncmp(state, "08", 2) == 0 || strncmp(state, "40", 2) == 0 ||
         strncmp(state, "53", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
         strcmp(state, "55P03") == 0;
}

static uint64_t deadline_of(const StoreConn *c) {
  return c->timeout_ms ? uv_hrtime() + (uint64_t)c->timeout_ms * 1000000 : 0;
}

/* Waits for the socket to be ready for `events`, until `deadline` (0:
 * for ever). 0, or -1 when the deadline passed. */
static int wait_socket(StoreConn *c, short events, uint64_t deadline) {
  struct pollfd p = {.fd = pq_dl.socket(c->pg), .events = events};
  for (;;) {
    int timeout = -1;
    if (deadline) {
      uint64_t now = uv_hrtime();
      if (now >= deadline) return -1;
      timeout = (int)((deadline - now) / 1000000) + 1;
    }
    int n = poll(&p, 1, timeout);
    if (n > 0) return 0;
    if (n < 0 && errno != EINTR) return -1;
    if (n == 0 && deadline && uv_hrtime() >= deadline) return -1;
  }
}

/* Sends what libpq has buffered, then waits for the whole answer to one
 * query: its last result is returned (its first error, if any), or NULL
 * when the connection was dropped (c->err says why). One round trip. */
static PGresult *await_result(StoreConn *c) {
  uint64_t deadline = deadline_of(c);
  int rc;
  while ((rc = pq_dl.flush(c->pg)) == 1) {
    if (wait_socket(c, POLLOUT | POLLIN, deadline)) {
      drop(c, "no answer from PostgreSQL in time");
      return NULL;
    }
    if (!pq_dl.consumeInput(c->pg)) break;
  }
  if (rc < 0) {
    set_err(c, pq_dl.errorMessage(c->pg));
    drop(c, c->err);
    return NULL;
  }
  __atomic_add_fetch(&c->round_trips, 1, __ATOMIC_RELAXED);
  PGresult *keep = NULL;
  for (;;) {
    while (pq_dl.isBusy(c->pg)) {
      if (wait_socket(c, POLLIN, deadline)) {
        if (keep) pq_dl.clear(keep);
        drop(c, "no answer from PostgreSQL in time");
        return NULL;
      }
      if (!pq_dl.consumeInput(c->pg)) {
        if (keep) pq_dl.clear(keep);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", pq_dl.errorMessage(c->pg));
        drop(c, msg);
        return NULL;
      }
    }
    PGresult *r = pq_dl.getResult(c->pg);
    if (!r) break;
    /* A script's first error is what it failed of. */
    if (keep && pq_dl.resultStatus(keep) == PGRES_FATAL_ERROR) {
      pq_dl.clear(r);
    } else {
      if (keep) pq_dl.clear(keep);
      keep = r;
    }
  }
  if (!keep) {
    set_err(c, pq_dl.errorMessage(c->pg));
    if (pq_dl.status(c->pg) == CONNECTION_BAD) drop(c, c->err);
  }
  return keep;
}

/* Reads the answers of a pipeline up to its sync point: returns the first
 * failed result if any statement failed (those after it were skipped),
 * else the last statement's result; NULL when the connection was dropped.
 * One round trip. */
static PGresult *await_pipeline(StoreConn *c) {
  uint64_t deadline = deadline_of(c);
  int rc;
  while ((rc = pq_dl.flush(c->pg)) == 1) {
    if (wait_socket(c, POLLOUT | POLLIN, deadline)) {
      drop(c, "no answer from PostgreSQL in time");
      return NULL;
    }
    if (!pq_dl.consumeInput(c->pg)) break;
  }
  if (rc < 0) {
    set_err(c, pq_dl.errorMessage(c->pg));
    drop(c, c->err);
    return NULL;
  }
  __atomic_add_fetch(&c->round_trips, 1, __ATOMIC_RELAXED);
  PGresult *failed = NULL, *last = NULL;
  for (;;) {
    while (pq_dl.isBusy(c->pg)) {
      if (wait_socket(c, POLLIN, deadline) || !pq_dl.consumeInput(c->pg)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s",
                 c->pg ? pq_dl.errorMessage(c->pg) : "lost");
        if (failed) pq_dl.clear(failed);
        if (last) pq_dl.clear(last);
        drop(c, *msg ? msg : "no answer from PostgreSQL in time");
        return NULL;
      }
    }
    PGresult *r = pq_dl.getResult(c->pg);
    if (!r) {
      /* The end of one statement's results; a lost connection also ends
       * here, with no sync to come. */
      if (pq_dl.status(c->pg) == CONNECTION_BAD) {
        if (failed) pq_dl.clear(failed);
        if (last) pq_dl.clear(last);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", pq_dl.errorMessage(c->pg));
        drop(c, msg);
        return NULL;
      }
      continue;
    }
    ExecStatusType st = pq_dl.resultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
      pq_dl.clear(r);
      break;
    }
    if (st == PGRES_FATAL_ERROR && !failed) {
      failed = r;
    } else if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      if (last) pq_dl.clear(last);
      last = r;
    } else {
      pq_dl.clear(r); /* skipped after a failure */
    }
  }
  c->deferred = 0;
  pq_dl.exitPipelineMode(c->pg);
  if (failed) {
    if (last) pq_dl.clear(last);
    return failed;
  }
  return last;
}

/* Notes a failed result's message and SQLSTATE; true if `r` succeeded. */
static bool result_ok(StoreConn *c, PGresult *r) {
  if (!r) return false;
  ExecStatusType st = pq_dl.resultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return true;
  const char *state = pq_dl.resultErrorField(r, PG_DIAG_SQLSTATE);
  snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "XX000");
  c->transient = is_transient_state(c->sqlstate);
  set_err(c, pq_dl.resultErrorMessage(r));
  if (pq_dl.status(c->pg) == CONNECTION_BAD) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", c->err);
    drop(c, msg);
  }
  return false;
}

static bool result_ok(StoreConn *c, PGresult *r);

/* Sends the statements waiting in the pipeline and reads their answers.
 * 0, or RESTOCK_ESTORE when one failed (c->err). */
static int flush_deferred(StoreConn *c) {
  if (!c->pg || c->deferred == 0) return 0;
  if (!pq_dl.pipelineSync(c->pg)) {
    set_err(c, pq_dl.errorMessage(c->pg));
    drop(c, c->err);
    return RESTOCK_ESTORE;
  }
  PGresult *r = await_pipeline(c);
  bool ok = result_ok(c, r);
  if (r) pq_dl.clear(r);
  return ok ? 0 : RESTOCK_ESTORE;
}

/* Runs a statement without parameters and its result, for the session's
 * settings. */
static int run_simple(StoreConn *c, const char *sql) {
  if (!c->pg) return RESTOCK_EUNAVAIL;
  if (flush_deferred(c)) return RESTOCK_ESTORE;
  if (!pq_dl.sendQuery(c->pg, sql)) {
    set_err(c, pq_dl.errorMessage(c->pg));
    return RESTOCK_ESTORE;
  }
  PGresult *r = await_result(c);
  bool ok = result_ok(c, r);
  if (r) pq_dl.clear(r);
  return ok ? 0 : RESTOCK_ESTORE;
}

/* Names the node in the session (restockd.node, the payload of the
 * notifications its commits raise: migration 002). */
static int set_session_node(StoreConn *c) {
  const char *values[1] = {c->node};
  if (!pq_dl.sendQueryParams(c->pg,
                             "SELECT set_config('restockd.node', $1, false)", 1,
                             NULL, values, NULL, NULL, 0)) {
    set_err(c, pq_dl.errorMessage(c->pg));
    return RESTOCK_ESTORE;
  }
  PGresult *r = await_result(c);
  bool ok = result_ok(c, r);
  if (r) pq_dl.clear(r);
  return ok ? 0 : RESTOCK_ESTORE;
}

static void pg_set_node(StoreConn *c, const char *node) {
  snprintf(c->node, sizeof c->node, "%s", node ? node : "");
  if (c->pg && c->node[0] && set_session_node(c))
    log_error("postgresql: cannot name the node: %s", c->err);
}

static const char *durability_sql(Durability d) {
  /* "process": an acknowledged write survives a crash of restockd (and a
   * clean restart of PostgreSQL) without waiting for the WAL to reach the
   * disk; "full": each commit is flushed (and replicated to a synchronous
   * standby if the server has one) before it is acknowledged. */
  return d == DURABILITY_FULL ? "SET synchronous_commit = on"
                              : "SET synchronous_commit = off";
}

/* Opens the session of `c`. Returns 0 or RESTOCK_EUNAVAIL (c->err). */
static int open_session(StoreConn *c) {
  /* Defaults come first: a key the URI sets itself wins (libpq takes the
   * last value of a key, and dbname's URI expands in its place). */
  const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *values[] = {CONNECT_TIMEOUT_S, c->app, c->uri, NULL};
  PGconn *pg = pq_dl.connectdbParams(keys, values, 1);
  if (!pg || pq_dl.status(pg) != CONNECTION_OK) {
    set_err(c, pg ? pq_dl.errorMessage(pg) : "out of memory");
    if (pg) pq_dl.finish(pg);
    c->transient = true;
    return RESTOCK_EUNAVAIL;
  }
  pq_dl.setNoticeProcessor(pg, on_notice, NULL);
  pq_dl.setnonblocking(pg, 1);
  c->pg = pg;
  c->generation++;
  /* Times are formatted by restock_iso; the session's zone only matters
   * for text a person reads. */
  if (run_simple(c, "SET TIME ZONE 'UTC'") ||
      (c->role != CONN_READER &&
       run_simple(c, durability_sql(c->durability))) ||
      (c->node[0] && set_session_node(c))) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", c->err);
    drop(c, msg);
    return RESTOCK_EUNAVAIL;
  }
  return 0;
}

static int pg_connect(const char *uri, ConnRole role, StoreConn **out,
                      char **err) {
  char why[512];
  if (pq_dl_load(why, sizeof why)) {
    *err = xstrdup(why);
    return RESTOCK_ESTORE;
  }
  StoreConn *c = xcalloc(1, sizeof *c);
  c->uri = xstrdup(uri);
  c->role = role;
  c->backoff_ms = BACKOFF_FIRST_MS;
  c->app = role == CONN_READER ? "restockd reader" : "restockd";
  /* A server's connections give up on an answer that does not come; the
   * CLI waits as long as a migration takes. */
  c->timeout_ms = role == CONN_CLI ? 0 : IO_TIMEOUT_MS;
  if (open_session(c)) {
    char *shown = store_pg_driver.display_uri(uri);
    *err = xasprintf("cannot connect to PostgreSQL at %s: %s", shown, c->err);
    free(shown);
    free(c->uri);
    free(c);
    return RESTOCK_ESTORE;
  }
  *out = c;
  return 0;
}

static void pg_disconnect(StoreConn *c) {
  if (!c) return;
  if (c->pg) pq_dl.finish(c->pg);
  free(c->uri);
  free(c);
}

static int pg_ensure(StoreConn *c, char **err) {
  if (c->pg && pq_dl.status(c->pg) == CONNECTION_OK) return 0;
  if (c->pg) drop(c, pq_dl.errorMessage(c->pg));
  uint64_t now = uv_hrtime();
  if (now < c->retry_at_ns) {
    *err = xasprintf("PostgreSQL is unreachable (%s); trying again in %llu ms",
                     c->err,
                     (unsigned long long)((c->retry_at_ns - now) / 1000000));
    return RESTOCK_EUNAVAIL;
  }
  if (open_session(c)) {
    if (!c->was_lost)
      log_error(
          "postgresql: the connection is lost and cannot be made "
          "again yet: %s",
          c->err);
    c->was_lost = true;
    c->retry_at_ns = uv_hrtime() + (uint64_t)c->backoff_ms * 1000000;
    c->backoff_ms =
        c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    *err = xasprintf("PostgreSQL is unreachable: %s", c->err);
    return RESTOCK_EUNAVAIL;
  }
  if (c->was_lost || c->generation > 1)
    log_info("postgresql: %s connection made again",
             c->role == CONN_READER ? "a reader's" : "the writer's");
  c->was_lost = false;
  c->backoff_ms = BACKOFF_FIRST_MS;
  c->retry_at_ns = 0;
  return 0;
}

static bool pg_transient(StoreConn *c) { return c->transient || !c->pg; }

static unsigned long long pg_round_trips(StoreConn *c) {
  return __atomic_load_n(&c->round_trips, __ATOMIC_RELAXED);
}

static int pg_exec(StoreConn *c, const char *script, char **err) {
  /* A migration: several statements without parameters, in the
   * transaction store.c opened. */
  int rc = run_simple(c, script);
  if (rc) *err = xstrdup(c->err);
  return rc;
}

/* ---- statements ------------------------------------------------------------
 */

/* The largest $N of a statement. None of our statements has a dollar
 * followed by a digit inside a literal. */
static int count_params(const char *sql) {
  int most = 0;
  for (const char *p = sql; *p; p++)
    if (p[0] == '$' && p[1] >= '0' && p[1] <= '9') {
      int n = atoi(p + 1);
      if (n > most) most = n;
    }
  return most;
}

static StoreStmt *pg_prepare(StoreConn *c, const char *sql, char **err) {
  StoreStmt *s = xcalloc(1, sizeof *s);
  s->c = c;
  s->sql = xstrdup(sql);
  snprintf(s->name, sizeof s->name, "s%u", ++c->next_name);
  s->nparams = count_params(sql);
  s->deferrable =
      s->nparams == 0 &&
      (strncmp(sql, "BEGIN", 5) == 0 || strncmp(sql, "SAVEPOINT ", 10) == 0 ||
       strncmp(sql, "RELEASE SAVEPOINT ", 18) == 0);
  s->values = xcalloc((size_t)(s->nparams ? s->nparams : 1), sizeof *s->values);
  /* Prepared on the server at its first run, in whatever session is
   * current then. */
  return s;
}

static void clear_values(StoreStmt *s) {
  for (int i = 0; i < s->nparams; i++) {
    free(s->values[i]);
    s->values[i] = NULL;
  }
}

static void pg_finalize(StoreStmt *s) {
  if (!s) return;
  if (s->res) pq_dl.clear(s->res);
  clear_values(s);
  free(s->values);
  free(s->sql);
  free(s);
}

/* Parameters past the statement's last $N are dropped: a call site may
 * bind for another backend's form of the statement. */
static void set_value(StoreStmt *s, int i, char *v) {
  if (i < 1 || i > s->nparams) {
    free(v);
    return;
  }
  free(s->values[i - 1]);
  s->values[i - 1] = v;
}

static void pg_bind_null(StoreStmt *s, int i) { set_value(s, i, NULL); }
static void pg_bind_int(StoreStmt *s, int i, long long v) {
  set_value(s, i, xasprintf("%lld", v));
}
static void pg_bind_double(StoreStmt *s, int i, double v) {
  set_value(s, i, xasprintf("%.17g", v));
}
static void pg_bind_text(StoreStmt *s, int i, const char *v) {
  set_value(s, i, xstrdup(v));
}

/* Prepares `s` in the current session. */
static int prepare_now(StoreStmt *s) {
  StoreConn *c = s->c;
  if (!pq_dl.sendPrepare(c->pg, s->name, s->sql, s->nparams, NULL)) {
    set_err(c, pq_dl.errorMessage(c->pg));
    return RESTOCK_ESTORE;
  }
  PGresult *r = await_result(c);
  bool ok = result_ok(c, r);
  if (r) pq_dl.clear(r);
  if (!ok) return RESTOCK_ESTORE;
  s->prepared = c->generation;
  return 0;
}

/* Queues a statement whose answer is read with the next one's. */
static int defer(StoreStmt *s) {
  StoreConn *c = s->c;
  if (c->deferred == 0 && !pq_dl.enterPipelineMode(c->pg)) return 1;
  if (!pq_dl.sendQueryParams(c->pg, s->sql, 0, NULL, NULL, NULL, NULL, 0)) {
    set_err(c, pq_dl.errorMessage(c->pg));
    if (c->deferred == 0) pq_dl.exitPipelineMode(c->pg);
    return RESTOCK_ESTORE;
  }
  c->deferred++;
  s->ran = true;
  s->row = s->nrows = 0;
  s->changes = 0;
  return 0;
}

/* Sends a statement outside a pipeline, prepared first if need be. */
static int send_now(StoreStmt *s) {
  if (s->prepared != s->c->generation && prepare_now(s)) return RESTOCK_ESTORE;
  if (!pq_dl.sendQueryPrepared(s->c->pg, s->name, s->nparams,
                               (const char *const *)s->values, NULL, NULL, 0)) {
    set_err(s->c, pq_dl.errorMessage(s->c->pg));
    return RESTOCK_ESTORE;
  }
  return 0;
}

/* Starts a statement without waiting for its answer, which its next step
 * reads: the database runs it while the writer does other work. Only
 * outside a pipeline (nothing deferred waits to be sent before it): 1
 * then, and the step runs it as usual. */
static int pg_send(StoreStmt *s) {
  StoreConn *c = s->c;
  if (s->ran || s->sent || !c->pg || s->deferrable || c->deferred > 0) return 1;
  c->transient = false;
  if (send_now(s)) return RESTOCK_ESTORE;
  /* On its way now; what is left to write goes with the wait for the
   * answer (await_result). */
  if (pq_dl.flush(c->pg) < 0) {
    set_err(c, pq_dl.errorMessage(c->pg));
    drop(c, c->err);
    return RESTOCK_ESTORE;
  }
  s->sent = true;
  return 0;
}

static int pg_step(StoreStmt *s) {
  StoreConn *c = s->c;
  if (!s->ran) {
    PGresult *r;
    if (s->sent) {
      /* Started by pg_send: only its answer to read. */
      s->sent = false;
      r = await_result(c);
      goto answered;
    }
    c->transient = false;
    if (!c->pg) {
      c->transient = true;
      return RESTOCK_ESTORE;
    }
    if (s->deferrable) {
      int rc = defer(s);
      if (rc <= 0) return rc;
    }
    if (c->deferred > 0) {
      /* In the pipeline after what waits there: prepared first if need be,
       * then run, then one sync for all. */
      bool prepare = s->prepared != c->generation;
      if ((prepare &&
           !pq_dl.sendPrepare(c->pg, s->name, s->sql, s->nparams, NULL)) ||
          !pq_dl.sendQueryPrepared(c->pg, s->name, s->nparams,
                                   (const char *const *)s->values, NULL, NULL,
                                   0) ||
          !pq_dl.pipelineSync(c->pg)) {
        set_err(c, pq_dl.errorMessage(c->pg));
        drop(c, c->err);
        return RESTOCK_ESTORE;
      }
      r = await_pipeline(c);
      if (prepare && r && pq_dl.resultStatus(r) != PGRES_FATAL_ERROR)
        s->prepared = c->generation;
      else if (prepare)
        /* Whether the preparation was kept is unknown: the next one takes
         * a name of its own. */
        snprintf(s->name, sizeof s->name, "s%u", ++c->next_name);
    } else {
      if (send_now(s)) return RESTOCK_ESTORE;
      r = await_result(c);
    }
  answered:
    if (!result_ok(c, r)) {
      if (r) pq_dl.clear(r);
      return RESTOCK_ESTORE;
    }
    s->res = r;
    s->ran = true;
    s->row = 0;
    s->nrows = pq_dl.ntuples(r);
    const char *n = pq_dl.cmdTuples(r);
    s->changes = n && *n ? strtoll(n, NULL, 10) : 0;
  } else {
    s->row++;
  }
  return s->row < s->nrows ? 1 : 0;
}

static void pg_reset(StoreStmt *s) {
  if (s->sent) {
    /* Started and never read: its answer must not be taken for the next
     * statement's. */
    s->sent = false;
    if (s->c->pg) {
      PGresult *r = await_result(s->c);
      if (r) pq_dl.clear(r);
    }
  }
  if (s->res) pq_dl.clear(s->res);
  s->res = NULL;
  s->ran = false;
  s->row = s->nrows = 0;
  clear_values(s);
}

static bool pg_column_null(StoreStmt *s, int i) {
  return !s->res || s->row >= s->nrows || pq_dl.getisnull(s->res, s->row, i);
}

static long long pg_column_int(StoreStmt *s, int i) {
  if (pg_column_null(s, i)) return 0;
  const char *v = pq_dl.getvalue(s->res, s->row, i);
  /* Booleans come as t and f. */
  if (v[0] == 't' && v[1] == '\0') return 1;
  if (v[0] == 'f' && v[1] == '\0') return 0;
  return strtoll(v, NULL, 10);
}

static double pg_column_double(StoreStmt *s, int i) {
  if (pg_column_null(s, i)) return 0;
  return strtod(pq_dl.getvalue(s->res, s->row, i), NULL);
}

static const char *pg_column_text(StoreStmt *s, int i) {
  if (pg_column_null(s, i)) return NULL;
  return pq_dl.getvalue(s->res, s->row, i);
}

static long long pg_changes(StoreConn *c, StoreStmt *s) { return s->changes; }

static const char *pg_errmsg(StoreConn *c) { return c->err; }

static bool pg_in_transaction(StoreConn *c) {
  if (!c->pg) return false;
  PGTransactionStatusType t = pq_dl.transactionStatus(c->pg);
  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static void pg_set_durability(StoreConn *c, Durability d) {
  c->durability = d;
  if (c->pg && run_simple(c, durability_sql(d)))
    log_error("postgresql: cannot set the durability: %s", c->err);
}

static bool pg_private_uri(const char *uri) { return false; }

/* ---- masking the password -------------------------------------------------
 */

static char *pg_display_uri(const char *uri) {
  /* postgresql://user:password@host/db?password=...: the userinfo's
   * password and a password parameter are masked. */
  char *out = xstrdup(uri);
  char *scheme = strstr(out, "://");
  if (scheme) {
    char *info = scheme + 3;
    char *at = strchr(info, '@');
    char *slash = strchr(info, '/');
    char *colon = strchr(info, ':');
    if (at && (!slash || at < slash) && colon && colon < at) {
      char *masked = xasprintf("%.*s:***%s", (int)(colon - out), out, at);
      free(out);
      out = masked;
    }
  }
  char *p = strstr(out, "password=");
  if (p && (p == out || p[-1] == '?' || p[-1] == '&' || p[-1] == ' ')) {
    char *end = p + 9;
    while (*end && *end != '&' && *end != ' ') end++;
    char *masked = xasprintf("%.*s***%s", (int)(p + 9 - out), out, end);
    free(out);
    out = masked;
  }
  return out;
}

/* ---- the listener
 * ------------------------------------------------------------ */

typedef struct {
  StoreConn c;
  char node[160]; /* notifications of this node's own commits are skipped */
  void (*notify)(void *);
  void *arg;
  uv_thread_t thread;
  int pipe[2]; /* written to stop the thread */
} Listener;

/* LISTENs on a connection of its own and calls notify for each
 * notification; reconnects with backoff, and notifies once after each
 * reconnection, since notifications sent meanwhile were lost. */
static void listener_main(void *arg) {
  Listener *l = arg;
  StoreConn *c = &l->c;
  pthread_setname_np(pthread_self(), "restockd-listen");
  for (;;) {
    char *err = NULL;
    if (!c->pg || pq_dl.status(c->pg) != CONNECTION_OK) {
      if (pg_ensure(c, &err) == 0 && run_simple(c, LISTEN_SQL) == 0) {
        l->notify(l->arg);
      } else {
        if (c->pg) drop(c, c->err);
        free(err);
        err = NULL;
        /* Sleeps until the backoff allows another try, or the stop. */
        uint64_t now = uv_hrtime();
        int ms = c->retry_at_ns > now
                     ? (int)((c->retry_at_ns - now) / 1000000) + 1
                     : BACKOFF_FIRST_MS;
        struct pollfd p = {.fd = l->pipe[0], .events = POLLIN};
        if (poll(&p, 1, ms) > 0) break;
        continue;
      }
    }
    free(err);
    struct pollfd p[2] = {{.fd = pq_dl.socket(c->pg), .events = POLLIN},
                          {.fd = l->pipe[0], .events = POLLIN}};
    int n = poll(p, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (p[1].revents) break;
    if (!pq_dl.consumeInput(c->pg)) {
      drop(c, pq_dl.errorMessage(c->pg));
      continue;
    }
    bool any = false;
    PGnotify *note;
    while ((note = pq_dl.notifies(c->pg))) {
      if (!note->extra || strcmp(note->extra, l->node) != 0) any = true;
      pq_dl.freemem(note);
    }
    if (any) l->notify(l->arg);
  }
  if (c->pg) pq_dl.finish(c->pg);
  c->pg = NULL;
}

static int pg_listen(const char *uri, const char *node, void (*notify)(void *),
                     void *arg, void **state, char **err) {
  char why[512];
  if (pq_dl_load(why, sizeof why)) {
    *err = xstrdup(why);
    return RESTOCK_ESTORE;
  }
  Listener *l = xcalloc(1, sizeof *l);
  l->c.uri = xstrdup(uri);
  l->c.role = CONN_READER;
  l->c.app = "restockd listener";
  l->c.timeout_ms = IO_TIMEOUT_MS;
  l->c.backoff_ms = BACKOFF_FIRST_MS;
  snprintf(l->node, sizeof l->node, "%s", node ? node : "");
  l->notify = notify;
  l->arg = arg;
  if (pipe(l->pipe) != 0) {
    *err = xasprintf("cannot make the listener's pipe: %s", strerror(errno));
    free(l->c.uri);
    free(l);
    return RESTOCK_ESTORE;
  }
  uv_thread_options_t o = {UV_THREAD_HAS_STACK_SIZE, 256 << 10};
  if (uv_thread_create_ex(&l->thread, &o, listener_main, l) != 0) {
    *err = xstrdup("cannot start the PostgreSQL listener thread");
    close(l->pipe[0]);
    close(l->pipe[1]);
    free(l->c.uri);
    free(l);
    return RESTOCK_ESTORE;
  }
  *state = l;
  return 0;
}

static void pg_unlisten(void *state) {
  Listener *l = state;
  if (!l) return;
  if (write(l->pipe[1], "x", 1) != 1) log_warn("cannot stop the listener");
  uv_thread_join(&l->thread);
  close(l->pipe[0]);
  close(l->pipe[1]);
  free(l->c.uri);
  free(l);
}

const StoreDriver store_pg_driver = {
    .name = "postgres",
    .sql = pg_sql,
    .migrations = postgres_migrations,
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .bind_null = pg_bind_null,
    .bind_int = pg_bind_int,
    .bind_double = pg_bind_double,
    .bind_text = pg_bind_text,
    .send = pg_send,
    .step = pg_step,
    .reset = pg_reset,
    .column_null = pg_column_null,
    .column_int = pg_column_int,
    .column_double = pg_column_double,
    .column_text = pg_column_text,
    .changes = pg_changes,
    .errmsg = pg_errmsg,
    .in_transaction = pg_in_transaction,
    .set_durability = pg_set_durability,
    .private_uri = pg_private_uri,
    .shared = true,
    .batches = true,
    .claim_leases = true,
    .take_moves = true,
    .ensure = pg_ensure,
    .transient = pg_transient,
    .round_trips = pg_round_trips,
    .listen = pg_listen,
    .set_node = pg_set_node,
    .unlisten = pg_unlisten,
    .display_uri = pg_display_uri,
};
