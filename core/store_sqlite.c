/* The SQLite backend: its connections, its SQL, the single-process lock and
 * the WAL's checkpoints. Everything here runs on a storage thread (or on
 * the CLI's only thread), never on the event loop. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "store_driver.h"
#include "xmalloc.h"

extern const Migration sqlite_migrations[];

/* ---- SQL ------------------------------------------------------------------
 */

/* The event no partial index of events_named covers. */
#define SUBSCRIBED_SQL "'restock-notification.subscribed'"
#define RESTOCKED_SQL "'restock-notification.restocked'"
/* The variant column of an event named N with data D (migration 016): V,
 * which restockd passes with each restocked event it writes, else read
 * from the data of a restocked event written by other means. */
#define EVENT_VARIANT(N, D, V)                           \
  "CASE WHEN " N " = " RESTOCKED_SQL " THEN coalesce(" V \
  ","                                                    \
  " json_extract(" D ", '$.variant_id')) END"

/* The filters of the admin listings: ?1 variant, ?2 email, ?3 channel, each
 * NULL for any. "(?N IS NULL OR col = ?N)" is planned as a walk of the
 * table, so when the email or the variant is given the listing uses a form
 * whose plain equality lets SQLite search its index. */
#define SUB_FILTER                         \
  " WHERE (?1 IS NULL OR variant_id = ?1)" \
  " AND (?2 IS NULL OR email = ?2)"        \
  " AND (?3 IS NULL OR sales_channel_id = ?3)"
#define SUB_FILTER_BY_EMAIL              \
  " WHERE email = ?2"                    \
  " AND (?1 IS NULL OR variant_id = ?1)" \
  " AND (?3 IS NULL OR sales_channel_id = ?3)"
#define SUB_FILTER_BY_VARIANT       \
  " WHERE variant_id = ?1"          \
  " AND (?2 IS NULL OR email = ?2)" \
  " AND (?3 IS NULL OR sales_channel_id = ?3)"
/* Columns: id, variant_id, sales_channel_id, email, created_at, notified_at,
 * status, quantity, locale. ?4 is the history's status (NULL for the
 * active and pending ones), ?5 the limit, ?6 the offset. */
#define SUB_LIST(filter)                                              \
  "SELECT id, variant_id, sales_channel_id, email, created_at, NULL," \
  " 'active', quantity, locale FROM restock_subscriptions" filter     \
  " AND ?4 IS NULL ORDER BY id LIMIT ?5 OFFSET ?6"
#define PEND_LIST(filter)                                             \
  "SELECT id, variant_id, sales_channel_id, email, created_at, NULL," \
  " 'pending', quantity, locale FROM restock_pending" filter          \
  " AND ?4 IS NULL ORDER BY id LIMIT ?5 OFFSET ?6"
#define HIST_LIST(filter)                                                    \
  "SELECT id, variant_id, sales_channel_id, email, created_at, notified_at," \
  " status, quantity, locale FROM restock_history" filter                    \
  " AND status = ?4 ORDER BY id LIMIT ?5 OFFSET ?6"
#define SUB_COUNT(filter) \
  "SELECT count(*) FROM restock_subscriptions" filter " AND ?4 IS NULL"
#define PEND_COUNT(filter) \
  "SELECT count(*) FROM restock_pending" filter " AND ?4 IS NULL"
#define HIST_COUNT(filter) \
  "SELECT count(*) FROM restock_history" filter " AND status = ?4"
/* ?2 the status ('active', 'pending', a history status, or NULL for any),
 * ?3 the variant or NULL, ?1 the last id read, ?4 the page's size. */
#define EXPORT_COLUMNS "id, variant_id, sales_channel_id, email, created_at"
#define EXPORT_FILTER(status_test)                 \
  " WHERE id > ?1 AND (?2 IS NULL OR " status_test \
  ") AND"                                          \
  " (?3 IS NULL OR variant_id = ?3) ORDER BY id LIMIT ?4"

/* Variant columns, as store.c reads them (read_variant). */
#define VARIANT_COLUMNS                                              \
  "id, product_id, sku, title, inventory_quantity, allow_backorder," \
  " manage_inventory, created_at, updated_at,"                       \
  " EXISTS (SELECT 1 FROM inventory_levels l WHERE l.variant_id = v.id)"
/* ?1 a prefix of id, sku or title (any letter case), ?2 sold out (1) or in
 * stock (0), each NULL for any. */
#define VARIANT_FILTER                                                 \
  " WHERE (?1 IS NULL OR substr(lower(id), 1, length(?1)) = lower(?1)" \
  " OR substr(lower(coalesce(sku, '')), 1, length(?1)) = lower(?1)"    \
  " OR substr(lower(coalesce(title, '')), 1, length(?1)) = lower(?1))" \
  " AND (?2 IS NULL OR (CASE WHEN manage_inventory = 0 OR"             \
  " allow_backorder = 1 OR inventory_quantity > 0 THEN 0 ELSE 1 END) = ?2)"

/* The notifications of a report: sent in [?1, ?2), of variant ?3 (NULL:
 * any). */
#define REPORT_FILTER                                                     \
  " FROM restock_history WHERE status = 'notified' AND notified_at >= ?1" \
  " AND notified_at < ?2 AND (?3 IS NULL OR variant_id = ?3)"

#define EVENT_COLUMNS "id, name, data, status, attempts, last_error, created_at"

/* The scope's subscriptions that want no more than ?3 units. */
#define SUB_TAKE                                     \
  "SELECT id, email, created_at, locale, quantity"   \
  " FROM restock_subscriptions"                      \
  " WHERE variant_id = ?1 AND sales_channel_id = ?2" \
  " AND (quantity IS NULL OR quantity <= ?3) ORDER BY id LIMIT ?4"

static const char *const sqlite_sql[SQL_COUNT_] = {
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_BEGIN_READ] = "BEGIN",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_SAVEPOINT] = "SAVEPOINT u",
    [SQL_RELEASE] = "RELEASE u",
    [SQL_ROLLBACK_TO] = "ROLLBACK TO u",
    [SQL_MIG_CREATE] =
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
    [SQL_MIG_GET] = "SELECT applied_at FROM schema_migrations WHERE name = ?1",
    [SQL_MIG_RECORD] =
        "INSERT INTO schema_migrations (name, applied_at) VALUES (?1, ?2)",
    /* One process migrates a SQLite file at a time: BEGIN IMMEDIATE in each
     * migration is the lock. */
    [SQL_MIG_LOCK] = "SELECT 1",
    [SQL_MIG_UNLOCK] = "SELECT 1",
    [SQL_VARIANT_GET] =
        "SELECT " VARIANT_COLUMNS " FROM variants v WHERE id = ?1",
    [SQL_VARIANT_PUT] =
        "INSERT OR REPLACE INTO variants (id, product_id, sku, title,"
        " inventory_quantity, allow_backorder, manage_inventory, created_at,"
        " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [SQL_VARIANT_SET_QTY] =
        "UPDATE variants SET inventory_quantity = ?2, updated_at = ?3"
        " WHERE id = ?1",
    [SQL_VARIANT_DELETE] = "DELETE FROM variants WHERE id = ?1",
    [SQL_VARIANT_LIST] =
        "SELECT " VARIANT_COLUMNS
        ", (SELECT count(*) FROM restock_subscriptions s"
        " WHERE s.variant_id = v.id)"
        " FROM variants v" VARIANT_FILTER " ORDER BY id LIMIT ?3 OFFSET ?4",
    [SQL_VARIANT_COUNT] = "SELECT count(*) FROM variants" VARIANT_FILTER,
    /* Never below the largest id: rows written by other means (an import
     * straight into the file) cannot collide with the next one. */
    [SQL_SUB_NEXT_ID] =
        "SELECT max(value, (SELECT coalesce(max(id), 0)"
        " FROM restock_subscriptions)) + 1"
        " FROM sequences WHERE name = 'restock_subscriptions'",
    [SQL_SUB_ID_TAKEN] =
        "UPDATE sequences SET value = ?1 WHERE name = 'restock_subscriptions'",
    /* One writer: the next rowid is exactly the largest plus one. */
    [SQL_EVENT_NEXT_ID] =
        "SELECT CASE WHEN max(id) >= 9223372036854775807 THEN NULL"
        " ELSE coalesce(max(id), 0) + 1 END FROM events",
    [SQL_SUB_INSERT] =
        "INSERT OR IGNORE INTO restock_subscriptions"
        " (id, variant_id, sales_channel_id, email, created_at,"
        " subscribed_event_id, quantity, locale)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [SQL_SUB_CREATED] =
        "SELECT created_at FROM restock_subscriptions"
        " WHERE email = ?3 AND variant_id = ?1 AND sales_channel_id = ?2",
    [SQL_SUB_REMOVE_ID] = "DELETE FROM restock_subscriptions WHERE id = ?1",
    [SQL_SUB_LIST] = SUB_LIST(SUB_FILTER),
    [SQL_SUB_LIST_BY_EMAIL] = SUB_LIST(SUB_FILTER_BY_EMAIL),
    [SQL_SUB_LIST_BY_VARIANT] = SUB_LIST(SUB_FILTER_BY_VARIANT),
    [SQL_SUB_COUNT] = SUB_COUNT(SUB_FILTER),
    [SQL_SUB_COUNT_BY_EMAIL] = SUB_COUNT(SUB_FILTER_BY_EMAIL),
    [SQL_SUB_COUNT_BY_VARIANT] = SUB_COUNT(SUB_FILTER_BY_VARIANT),
    [SQL_HIST_LIST] = HIST_LIST(SUB_FILTER),
    [SQL_HIST_LIST_BY_EMAIL] = HIST_LIST(SUB_FILTER_BY_EMAIL),
    [SQL_HIST_LIST_BY_VARIANT] = HIST_LIST(SUB_FILTER_BY_VARIANT),
    [SQL_HIST_COUNT] = HIST_COUNT(SUB_FILTER),
    [SQL_HIST_COUNT_BY_EMAIL] = HIST_COUNT(SUB_FILTER_BY_EMAIL),
    [SQL_HIST_COUNT_BY_VARIANT] = HIST_COUNT(SUB_FILTER_BY_VARIANT),
    /* No WHERE: SQLite counts the entries of the smallest index. */
    [SQL_SUB_TOTAL] = "SELECT count(*) FROM restock_subscriptions",
    [SQL_SUB_ANY] =
        "SELECT 1 FROM restock_subscriptions WHERE variant_id = ?1 LIMIT 1",
    /* A variant's scopes, one index probe each (a loose index scan):
     * DISTINCT walked every subscription of the variant, 33 ms at 100,000
     * on PostgreSQL, for each chunk of a restock. */
    [SQL_SUB_SCOPES] =
        "WITH RECURSIVE scope (c) AS (SELECT min(sales_channel_id)"
        " FROM restock_subscriptions WHERE variant_id = ?1 UNION ALL"
        " SELECT (SELECT min(s.sales_channel_id) FROM restock_subscriptions s"
        " WHERE s.variant_id = ?1 AND s.sales_channel_id > scope.c)"
        " FROM scope WHERE scope.c IS NOT NULL)"
        " SELECT c FROM scope WHERE c IS NOT NULL",
    [SQL_SUB_TAKE] = SUB_TAKE,
    /* One writer: nothing else holds a row the take wants. */
    [SQL_SUB_TAKE_SHARED] = SUB_TAKE,
    [SQL_SUB_SPAN] =
        "SELECT min(id), max(id) FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2",
    [SQL_SUB_TO_HISTORY] =
        "INSERT INTO restock_history (variant_id, sales_channel_id, email,"
        " created_at, notified_at, subscribed_event_id, status, quantity,"
        " locale)"
        " SELECT variant_id, sales_channel_id, email, created_at, ?4,"
        " subscribed_event_id, 'notified', quantity, locale"
        " FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 AND id <= ?3"
        " AND (quantity IS NULL OR quantity <= ?5) ORDER BY id",
    [SQL_SUB_DELETE_UPTO] =
        "DELETE FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2 AND id <= ?3"
        " AND (quantity IS NULL OR quantity <= ?4)",
    /* The take's own demand counts (migration 014): the row triggers skip
     * while demand_bulk has a row, and the chunk's count moves at once. */
    [SQL_DEMAND_BULK_ON] = "INSERT INTO demand_bulk (taking) VALUES (1)",
    [SQL_DEMAND_BULK_OFF] = "DELETE FROM demand_bulk",
    /* Not run: SQLite's take counts its chunk itself (take_moves false). */
    [SQL_DEMAND_DEFER] = "SELECT 1",
    [SQL_DEMAND_TAKEN] =
        "UPDATE demand_counts SET waiting = waiting - ?3,"
        " notified = notified + ?3"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2",
    [SQL_SUB_SCOPE_ANY] =
        "SELECT 1 FROM restock_subscriptions"
        " WHERE variant_id = ?1 AND sales_channel_id = ?2"
        " AND (quantity IS NULL OR quantity <= ?3) LIMIT 1",
    [SQL_SUB_CANCEL_VARIANT_HIST] =
        "INSERT INTO restock_history (variant_id, sales_channel_id, email,"
        " created_at, notified_at, subscribed_event_id, status, quantity,"
        " locale)"
        " SELECT variant_id, sales_channel_id, email, created_at, ?2,"
        " subscribed_event_id, 'cancelled', quantity, locale"
        " FROM restock_subscriptions WHERE variant_id = ?1 ORDER BY id",
    [SQL_SUB_CANCEL_VARIANT_DELETE] =
        "DELETE FROM restock_subscriptions WHERE variant_id = ?1",
    [SQL_SUB_CANCEL_CHANNEL_HIST] =
        "INSERT INTO restock_history (variant_id, sales_channel_id, email,"
        " created_at, notified_at, subscribed_event_id, status, quantity,"
        " locale)"
        " SELECT variant_id, sales_channel_id, email, created_at, ?2,"
        " subscribed_event_id, 'cancelled', quantity, locale"
        " FROM restock_subscriptions WHERE sales_channel_id = ?1 ORDER BY id",
    [SQL_SUB_CANCEL_CHANNEL_DELETE] =
        "DELETE FROM restock_subscriptions WHERE sales_channel_id = ?1",
    [SQL_HIST_VARIANTS] =
        "SELECT DISTINCT variant_id FROM restock_history"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    /* Through events_restocked_variant (migration 016). */
    [SQL_EVENT_SCRUB_RESTOCKED] =
        "UPDATE events SET data = json_set(data, '$.emails',"
        " (SELECT json_group_array(value) FROM json_each(events.data,"
        " '$.emails') WHERE value != ?2),"
        " '$.subscribers', (SELECT json_group_array(json(value)) FROM"
        " json_each(events.data, '$.subscribers')"
        " WHERE json_extract(value, '$.email') != ?2))"
        " WHERE name = " RESTOCKED_SQL
        " AND variant_id = ?1"
        " AND instr(data, json_quote(?2)) > 0",
    [SQL_DELIVERY_SCRUB_SUBSCRIBER] =
        "DELETE FROM deliveries WHERE subscriber = ?2 AND event_id IN"
        " (SELECT id FROM events WHERE name = " RESTOCKED_SQL
        " AND variant_id = ?1) RETURNING event_id",
    [SQL_EVENT_ERASE_SUBSCRIBED] =
        "DELETE FROM events WHERE id IN ("
        " SELECT subscribed_event_id FROM restock_subscriptions"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)"
        " UNION SELECT subscribed_event_id FROM restock_history"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2))",
    /* Events a plugin emitted (every name but restockd's own three) whose
     * data holds the email as a JSON string, in any letter case. Walks
     * events_named (migration 007), which leaves subscribed events out. */
    [SQL_EVENT_EMITTED_WITH] =
        "SELECT id, data FROM events INDEXED BY events_named"
        " WHERE name != " SUBSCRIBED_SQL " AND name NOT IN (" RESTOCKED_SQL
        ", 'product-variant.updated')"
        " AND instr(lower(data), json_quote(?1)) > 0",
    [SQL_EVENT_SET_DATA] = "UPDATE events SET data = ?2 WHERE id = ?1",
    [SQL_SUB_ERASE] =
        "DELETE FROM restock_subscriptions"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    [SQL_HIST_ERASE] =
        "DELETE FROM restock_history"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    [SQL_CHECK_INSERT] =
        "INSERT OR IGNORE INTO restock_checks (variant_id, due_at)"
        " VALUES (?1, ?2)",
    [SQL_CHECK_REPLACE] =
        "INSERT OR REPLACE INTO restock_checks (variant_id, due_at)"
        " VALUES (?1, ?2)",
    [SQL_CHECK_NEXT] = "SELECT min(due_at) FROM restock_checks",
    [SQL_CHECK_DUE] =
        "SELECT variant_id FROM restock_checks WHERE due_at <= ?1"
        " ORDER BY due_at LIMIT ?2",
    [SQL_CHECK_DELETE] = "DELETE FROM restock_checks WHERE variant_id = ?1",
    /* Not run: one server takes a restock alone (store_shared). */
    [SQL_CHECK_DUE_SHARED] =
        "SELECT variant_id FROM restock_checks WHERE due_at <= ?1"
        " ORDER BY due_at LIMIT ?2",
    [SQL_CHECK_FINISH] =
        "DELETE FROM restock_checks WHERE variant_id = ?1 AND due_at <= ?2",
    [SQL_CHECK_COUNT] = "SELECT count(*) FROM restock_checks",
    [SQL_EVENT_INSERT] =
        "INSERT INTO events (id, name, data, status, created_at, variant_id)"
        " VALUES (?1, ?2, ?3, ?4, ?5, " EVENT_VARIANT("?2", "?3", "?6") ")",
    [SQL_EVENT_INSERT_AUTO] =
        "INSERT INTO events (name, data, status, created_at, variant_id)"
        " VALUES (?1, ?2, ?3, ?4, " EVENT_VARIANT("?1", "?2", "?5") ")",
    [SQL_SUB_SET_EVENT] =
        "UPDATE restock_subscriptions SET subscribed_event_id = ?2"
        " WHERE id = ?1",
    [SQL_DELIVERY_INSERT] =
        "INSERT INTO deliveries (event_id, handler, subscriber, max_attempts,"
        " next_at, updated_at, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SQL_DELIVERY_DUE] =
        /* A per-subscriber row's own share of the data; the event's
         * (large, for a restock) is then never read. */
    "SELECT d.event_id, d.handler, d.subscriber, d.attempts,"
    " d.max_attempts, e.name, COALESCE(d.data, e.data)"
    " FROM deliveries d JOIN events e ON e.id = d.event_id"
    " WHERE d.status = 'pending' AND d.next_at <= ?1"
    " ORDER BY d.next_at, d.event_id LIMIT ?2",
    [SQL_DELIVERY_LEASE] =
        "UPDATE deliveries SET next_at = ?4, lease_owner = ?5"
        " WHERE event_id = ?1 AND handler = ?2 AND subscriber = ?3",
    [SQL_DELIVERY_FINISH] =
        "UPDATE deliveries SET status = ?4, attempts = ?5, next_at = ?6,"
        " last_error = coalesce(?7, last_error), updated_at = ?8,"
        " lease_owner = NULL"
        " WHERE event_id = ?1 AND handler = ?2 AND subscriber = ?3"
        " AND lease_owner = ?9",
    [SQL_EVENT_REFRESH] =
        "UPDATE events SET"
        " status = CASE"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1"
        "               AND status = 'pending') THEN 'pending'"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1"
        "               AND status = 'dead') THEN 'dead'"
        "  ELSE 'delivered' END,"
        " attempts = (SELECT coalesce(max(attempts), 0) FROM deliveries"
        "             WHERE event_id = ?1),"
        " last_error = coalesce(?2, last_error)"
        " WHERE id = ?1",
    /* After one delivery finished with ?3 attempts (store_event_finish):
     * a delivery's attempts only grow between full refreshes, so the
     * event's are the larger of its own and ?3; a pending one is found in
     * deliveries_pending_event (migration 015). An event whose status and
     * attempts stay, and no error to note, is not rewritten: SQLite writes
     * a whole row on any update, a restock's 250 KB of data included. */
    [SQL_EVENT_FINISH] =
        "UPDATE events SET status = n.status,"
        " attempts = max(events.attempts, ?3),"
        " last_error = coalesce(?2, last_error)"
        " FROM (SELECT CASE"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1"
        "               AND status = 'pending') THEN 'pending'"
        "  WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1"
        "               AND status = 'dead') THEN 'dead'"
        "  ELSE 'delivered' END AS status) AS n"
        " WHERE events.id = ?1 AND (events.status IS NOT n.status"
        " OR events.attempts < ?3 OR ?2 IS NOT NULL)",
    [SQL_DELIVERY_NEXT] =
        "SELECT min(next_at) FROM deliveries WHERE status = 'pending'",
    [SQL_DELIVERY_RELEASE] =
        "UPDATE deliveries SET next_at = ?2, lease_owner = NULL"
        " WHERE status = 'pending' AND lease_owner = ?1",
    [SQL_DELIVERY_RELEASE_ALL] =
        "UPDATE deliveries SET next_at = ?1, lease_owner = NULL"
        " WHERE status = 'pending' AND lease_owner IS NOT NULL",
    [SQL_DELIVERY_PENDING] =
        "SELECT count(*) FROM deliveries WHERE status = 'pending'",
    [SQL_EVENT_LIST] =
        "SELECT " EVENT_COLUMNS
        " FROM events WHERE (?1 IS NULL OR name = ?1)"
        " AND (?2 IS NULL OR status = ?2) ORDER BY id LIMIT ?3 OFFSET ?4",
    [SQL_EVENT_COUNT] =
        "SELECT count(*) FROM events WHERE (?1 IS NULL OR name = ?1)"
        " AND (?2 IS NULL OR status = ?2)",
    /* The same for a status other than delivered: the literal condition
     * lets SQLite use the partial index events_open. */
    [SQL_EVENT_LIST_OPEN] = "SELECT " EVENT_COLUMNS
                            " FROM events WHERE (?1 IS NULL OR name = ?1)"
                            " AND status = ?2 AND status != 'delivered'"
                            " ORDER BY id LIMIT ?3 OFFSET ?4",
    [SQL_EVENT_COUNT_OPEN] =
        "SELECT count(*) FROM events WHERE (?1 IS NULL OR name = ?1)"
        " AND status = ?2 AND status != 'delivered'",
    /* Any other name: the literal condition lets SQLite use the partial
     * index events_named (migration 007). */
    [SQL_EVENT_LIST_NAMED] =
        "SELECT " EVENT_COLUMNS
        " FROM events WHERE name = ?1 AND name != " SUBSCRIBED_SQL
        " AND (?2 IS NULL OR status = ?2) ORDER BY id LIMIT ?3 OFFSET ?4",
    [SQL_EVENT_COUNT_NAMED] =
        "SELECT count(*) FROM events WHERE name = ?1 AND name "
        "!= " SUBSCRIBED_SQL " AND (?2 IS NULL OR status = ?2)",
    /* The deliveries of the events whose ids ?1 lists (JSON), by event,
     * each event's in the order they were written. */
    [SQL_EVENT_DELIVERIES] =
        "SELECT event_id, handler, subscriber, status, attempts, max_attempts,"
        " last_error, updated_at FROM deliveries"
        " WHERE event_id IN (SELECT value FROM json_each(?1))"
        " ORDER BY event_id, rowid",
    [SQL_EVENT_EXISTS] = "SELECT 1 FROM events WHERE id = ?1",
    [SQL_EVENT_RETRY] =
        "UPDATE deliveries SET status = 'pending', attempts = 0,"
        " next_at = ?2, updated_at = ?3, lease_owner = NULL"
        " WHERE event_id = ?1 AND status = 'dead'",
    [SQL_EVENT_SCAN] =
        "SELECT id, status, created_at FROM events WHERE id > ?1"
        " ORDER BY id LIMIT ?2",
    [SQL_EVENT_DELETE] = "DELETE FROM events WHERE id = ?1",
    [SQL_LOCATION_UPSERT] =
        "INSERT INTO stock_locations (id, name, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?3) ON CONFLICT (id) DO UPDATE SET"
        " name = CASE WHEN ?4 THEN ?2 ELSE name END, updated_at = ?3",
    [SQL_LOCATION_GET] =
        "SELECT id, name, created_at, updated_at FROM stock_locations"
        " WHERE id = ?1",
    [SQL_LOCATION_DELETE] = "DELETE FROM stock_locations WHERE id = ?1",
    [SQL_LOCATION_VARIANTS] =
        "SELECT DISTINCT variant_id FROM inventory_levels"
        " WHERE location_id = ?1 ORDER BY variant_id",
    [SQL_LEVELS_DELETE_LOCATION] =
        "DELETE FROM inventory_levels WHERE location_id = ?1",
    [SQL_LEVELS_DELETE_VARIANT] =
        "DELETE FROM inventory_levels WHERE variant_id = ?1",
    [SQL_CHANNEL_LOC_DELETE_LOCATION] =
        "DELETE FROM sales_channel_locations WHERE location_id = ?1",
    [SQL_CHANNEL_UPSERT] =
        "INSERT INTO sales_channels (id, name, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?3) ON CONFLICT (id) DO UPDATE SET"
        " name = CASE WHEN ?4 THEN ?2 ELSE name END, updated_at = ?3",
    [SQL_CHANNEL_GET] =
        "SELECT id, name, created_at, updated_at FROM sales_channels"
        " WHERE id = ?1",
    [SQL_CHANNEL_DELETE] = "DELETE FROM sales_channels WHERE id = ?1",
    [SQL_CHANNEL_LOCATIONS] =
        "SELECT location_id FROM sales_channel_locations"
        " WHERE sales_channel_id = ?1 ORDER BY location_id",
    [SQL_CHANNEL_LOC_CLEAR] =
        "DELETE FROM sales_channel_locations WHERE sales_channel_id = ?1",
    [SQL_CHANNEL_LOC_ADD] =
        "INSERT OR IGNORE INTO sales_channel_locations"
        " (sales_channel_id, location_id) VALUES (?1, ?2)",
    [SQL_CHANNEL_LEVELS] =
        "SELECT l.stocked_quantity, l.reserved_quantity"
        " FROM inventory_levels l JOIN sales_channel_locations c"
        " ON c.location_id = l.location_id"
        " WHERE l.variant_id = ?1 AND c.sales_channel_id = ?2",
    [SQL_LEVEL_GET] =
        "SELECT stocked_quantity, reserved_quantity FROM inventory_levels"
        " WHERE variant_id = ?1 AND location_id = ?2",
    [SQL_LEVEL_UPSERT] =
        "INSERT INTO inventory_levels (variant_id, location_id,"
        " stocked_quantity, reserved_quantity, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (variant_id, location_id)"
        " DO UPDATE SET stocked_quantity = ?3, reserved_quantity = ?4,"
        " updated_at = ?5"
        " RETURNING variant_id, location_id, stocked_quantity,"
        " reserved_quantity, created_at, updated_at",
    [SQL_LEVEL_LIST_VARIANT] =
        "SELECT variant_id, location_id, stocked_quantity, reserved_quantity,"
        " created_at, updated_at FROM inventory_levels WHERE variant_id = ?1"
        " ORDER BY location_id",
    [SQL_LEVEL_LIST_LOCATION] =
        "SELECT variant_id, location_id, stocked_quantity, reserved_quantity,"
        " created_at, updated_at FROM inventory_levels WHERE location_id = ?1"
        " ORDER BY variant_id",
    [SQL_KEY_UPSERT] =
        "INSERT INTO publishable_api_keys (id, created_at, updated_at)"
        " VALUES (?1, ?2, ?2) ON CONFLICT (id) DO UPDATE SET updated_at = ?2",
    [SQL_KEY_GET] =
        "SELECT id, NULL, created_at, updated_at FROM publishable_api_keys"
        " WHERE id = ?1",
    [SQL_KEY_CHANNELS] =
        "SELECT sales_channel_id FROM publishable_api_key_channels"
        " WHERE key_id = ?1 ORDER BY sales_channel_id",
    [SQL_KEY_CLEAR] =
        "DELETE FROM publishable_api_key_channels WHERE key_id = ?1",
    [SQL_KEY_ADD] =
        "INSERT OR IGNORE INTO publishable_api_key_channels"
        " (key_id, sales_channel_id) VALUES (?1, ?2)",
    [SQL_KEY_DELETE] = "DELETE FROM publishable_api_keys WHERE id = ?1",
    [SQL_KEY_CHANNEL_DELETE_CHANNEL] =
        "DELETE FROM publishable_api_key_channels WHERE sales_channel_id = ?1",
    [SQL_VARIANTS_TO_CHECK] =
        "SELECT DISTINCT l.variant_id FROM inventory_levels l"
        " WHERE l.location_id = ?1 AND EXISTS (SELECT 1 FROM"
        " restock_subscriptions s WHERE s.variant_id = l.variant_id"
        " AND s.sales_channel_id = ?2)",
    [SQL_LOCATION_LIST] =
        "SELECT id, name, created_at, updated_at FROM stock_locations"
        " ORDER BY id LIMIT ?1 OFFSET ?2",
    [SQL_LOCATION_COUNT] = "SELECT count(*) FROM stock_locations",
    [SQL_CHANNEL_LIST] =
        "SELECT id, name, created_at, updated_at FROM sales_channels"
        " ORDER BY id LIMIT ?1 OFFSET ?2",
    [SQL_CHANNEL_COUNT] = "SELECT count(*) FROM sales_channels",
    [SQL_KEY_LIST] =
        "SELECT id, NULL, created_at, updated_at FROM publishable_api_keys"
        " ORDER BY id LIMIT ?1 OFFSET ?2",
    [SQL_KEY_COUNT] = "SELECT count(*) FROM publishable_api_keys",
    [SQL_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [SQL_META_PUT] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
    [SQL_META_ADD] = "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
    /* One writer: what a write reads cannot change under it, so the
     * locking read is the plain one and the event needs no lock. */
    [SQL_VARIANT_LOCK] =
        "SELECT " VARIANT_COLUMNS " FROM variants v WHERE id = ?1",
    [SQL_EVENT_LOCK] = "SELECT 1 FROM events WHERE id = ?1",
    [SQL_DELIVERY_RENEW] =
        "UPDATE deliveries SET next_at = ?2"
        " WHERE lease_owner = ?1 AND status = 'pending'",
    [SQL_DELIVERY_OWNERS] =
        "SELECT DISTINCT lease_owner FROM deliveries"
        " WHERE lease_owner IS NOT NULL",
    /* A SQLite file serves one node (the store is not shared): the node
     * registry is never read or written. */
    [SQL_NODE_BEAT] = "SELECT 1",
    [SQL_NODE_LIST] = "SELECT NULL, NULL, NULL, NULL WHERE 0",
    [SQL_NODE_PEERS] = "SELECT NULL WHERE 0",
    [SQL_NODE_DELETE] = "SELECT 1",
    /* Not run: a statement costs SQLite microseconds, not a round trip, so
     * the writer runs each subscribe on its own (batches is false). */
    [SQL_IDS_RESERVE] = "SELECT NULL, NULL WHERE 0",
    [SQL_SUBSCRIBE_MANY] = "SELECT NULL, NULL, NULL WHERE 0",
    [SQL_SUB_FIND] =
        "SELECT id, created_at FROM restock_subscriptions"
        " WHERE email = ?3 AND variant_id = ?1 AND sales_channel_id = ?2",
    /* A wish given replaces the stored one; one not given keeps it. */
    [SQL_SUB_SET_WISH] =
        "UPDATE restock_subscriptions SET quantity = coalesce(?2, quantity),"
        " locale = coalesce(?3, locale) WHERE id = ?1",
    [SQL_PEND_FIND] =
        "SELECT id, created_at, confirm_sent_at FROM restock_pending"
        " WHERE email = ?3 AND variant_id = ?1 AND sales_channel_id = ?2",
    [SQL_PEND_INSERT] =
        "INSERT INTO restock_pending (id, variant_id, sales_channel_id, email,"
        " created_at, quantity, locale, confirm_sent_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [SQL_PEND_SET_WISH] =
        "UPDATE restock_pending SET quantity = coalesce(?2, quantity),"
        " locale = coalesce(?3, locale) WHERE id = ?1",
    [SQL_PEND_SET_SENT] =
        "UPDATE restock_pending SET confirm_sent_at = ?2 WHERE id = ?1",
    [SQL_PEND_GET] =
        "SELECT variant_id, sales_channel_id, email, coalesce(locale, ''),"
        " coalesce(quantity, 0) FROM restock_pending WHERE id = ?1",
    [SQL_PEND_ACTIVATE] =
        "INSERT INTO restock_subscriptions (id, variant_id, sales_channel_id,"
        " email, created_at, subscribed_event_id, quantity, locale)"
        " SELECT id, variant_id, sales_channel_id, email, ?2, ?3, quantity,"
        " locale FROM restock_pending WHERE id = ?1",
    [SQL_PEND_DELETE] = "DELETE FROM restock_pending WHERE id = ?1",
    [SQL_SUB_EXISTS_ID] =
        "SELECT variant_id, sales_channel_id, email, coalesce(locale, ''),"
        " coalesce(quantity, 0) FROM restock_subscriptions WHERE id = ?1",
    [SQL_PEND_SCAN] =
        "SELECT id, created_at FROM restock_pending ORDER BY id LIMIT ?1",
    [SQL_SUB_SCAN] =
        "SELECT id, created_at FROM restock_subscriptions ORDER BY id"
        " LIMIT ?1",
    [SQL_SUB_EXPIRE_HIST] =
        "INSERT INTO restock_history (variant_id, sales_channel_id, email,"
        " created_at, notified_at, subscribed_event_id, status, quantity,"
        " locale)"
        " SELECT variant_id, sales_channel_id, email, created_at, ?2,"
        " subscribed_event_id, 'expired', quantity, locale"
        " FROM restock_subscriptions WHERE id = ?1",
    [SQL_PEND_LIST] = PEND_LIST(SUB_FILTER),
    [SQL_PEND_LIST_BY_EMAIL] = PEND_LIST(SUB_FILTER_BY_EMAIL),
    [SQL_PEND_LIST_BY_VARIANT] = PEND_LIST(SUB_FILTER_BY_VARIANT),
    [SQL_PEND_COUNT] = PEND_COUNT(SUB_FILTER),
    [SQL_PEND_COUNT_BY_EMAIL] = PEND_COUNT(SUB_FILTER_BY_EMAIL),
    [SQL_PEND_COUNT_BY_VARIANT] = PEND_COUNT(SUB_FILTER_BY_VARIANT),
    [SQL_PEND_ERASE] =
        "DELETE FROM restock_pending"
        " WHERE email = ?1 AND (?2 IS NULL OR variant_id = ?2)",
    [SQL_PEND_CANCEL_VARIANT] =
        "DELETE FROM restock_pending WHERE variant_id = ?1",
    [SQL_PEND_CANCEL_CHANNEL] =
        "DELETE FROM restock_pending WHERE sales_channel_id = ?1",
    [SQL_EVENT_ERASE_CONFIRM] =
        "DELETE FROM events INDEXED BY events_named"
        " WHERE name = 'restock-notification.confirmation_requested'"
        /* The index's own condition, for the planner to see it applies. */
        " AND name != 'restock-notification.subscribed'"
        " AND json_extract(data, '$.email') = ?1"
        " AND (?2 IS NULL OR json_extract(data, '$.variant_id') = ?2)",
    [SQL_EMAIL_KNOWN] =
        "SELECT EXISTS (SELECT 1 FROM restock_subscriptions WHERE email = ?1)"
        " OR EXISTS (SELECT 1 FROM restock_pending WHERE email = ?1)"
        " OR EXISTS (SELECT 1 FROM restock_history WHERE email = ?1)",
    [SQL_EXPORT_ACTIVE] =
        "SELECT " EXPORT_COLUMNS
        ", NULL, 'active', quantity, locale"
        " FROM restock_subscriptions" EXPORT_FILTER("?2 = 'active'"),
    [SQL_EXPORT_PENDING] =
        "SELECT " EXPORT_COLUMNS
        ", NULL, 'pending', quantity, locale"
        " FROM restock_pending" EXPORT_FILTER("?2 = 'pending'"),
    [SQL_EXPORT_HIST] = "SELECT " EXPORT_COLUMNS
                        ", notified_at, status, quantity, locale"
                        " FROM restock_history" EXPORT_FILTER("status = ?2"),
    /* Shop connectors (issue 16). */
    [SQL_KV_GET] =
        "SELECT value FROM script_kv WHERE key = ?1"
        " AND (expires_at IS NULL OR expires_at > ?2)",
    [SQL_KV_PUT] =
        "INSERT INTO script_kv (key, value, expires_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO UPDATE SET"
        " value = ?2, expires_at = ?3, updated_at = ?4",
    [SQL_KV_DELETE] = "DELETE FROM script_kv WHERE key = ?1",
    /* A few expired rows at a time: every set pays for a little sweeping,
     * none for much. */
    [SQL_KV_SWEEP] =
        "DELETE FROM script_kv WHERE key IN (SELECT key FROM script_kv"
        " WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
    /* Taken when free, run out, or already this node's; the number of
     * rows changed says whether this node holds it now. */
    [SQL_LEASE_CLAIM] =
        "INSERT INTO task_leases (name, owner, lease_until)"
        " VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET"
        " owner = ?2, lease_until = ?3"
        " WHERE task_leases.owner = ?2 OR task_leases.lease_until <= ?4",
    [SQL_LEASE_RELEASE] =
        "UPDATE task_leases SET lease_until = 0"
        " WHERE name = ?1 AND owner = ?2",
    [SQL_ORDER_INSERT] =
        "INSERT INTO shop_orders (order_id, created_at, recorded_at)"
        " VALUES (?1, ?2, ?3) ON CONFLICT (order_id) DO NOTHING",
    /* The latest notification of (email, variant) in the window that has
     * not converted yet. */
    [SQL_CONVERSION_CANDIDATE] =
        "SELECT id FROM restock_history WHERE email = ?1 AND variant_id = ?2"
        " AND status = 'notified' AND converted_at IS NULL"
        " AND notified_at >= ?3 AND notified_at <= ?4"
        " ORDER BY notified_at DESC, id DESC LIMIT 1",
    [SQL_CONVERSION_MARK] =
        "UPDATE restock_history SET converted_at = ?2,"
        " conversion_order_id = ?3, conversion_currency = ?4,"
        " conversion_amount = ?5 WHERE id = ?1 AND converted_at IS NULL",
    [SQL_REPORT_TOTALS] = "SELECT count(*), count(converted_at)" REPORT_FILTER,
    [SQL_REPORT_REVENUE] =
        "SELECT conversion_currency, sum(conversion_amount)" REPORT_FILTER
        " AND converted_at IS NOT NULL GROUP BY conversion_currency"
        " ORDER BY conversion_currency",
    [SQL_REPORT_VARIANT_COUNT] =
        "SELECT count(DISTINCT variant_id)" REPORT_FILTER,
    [SQL_REPORT_VARIANTS] =
        "SELECT variant_id, count(*), count(converted_at)" REPORT_FILTER
        " GROUP BY variant_id"
        " ORDER BY count(converted_at) DESC, count(*) DESC, variant_id"
        " LIMIT ?4 OFFSET ?5",
    /* The web console (issue 17), over migration 011. */
    [SQL_SESSION_INSERT] =
        "INSERT INTO admin_sessions (selector, validator_hash, created_at,"
        " expires_at) VALUES (?1, ?2, ?3, ?4)",
    [SQL_SESSION_GET] =
        "SELECT validator_hash, expires_at FROM admin_sessions"
        " WHERE selector = ?1 AND expires_at > ?2",
    [SQL_SESSION_DELETE] = "DELETE FROM admin_sessions WHERE selector = ?1",
    [SQL_SESSION_PRUNE] = "DELETE FROM admin_sessions WHERE expires_at <= ?1",
    /* Ranked by the counts migration 011's triggers keep: a grouping of
     * their rows (one per scope of a variant), never of the
     * subscriptions. The oldest active subscription of a scope is the
     * first entry of restock_subscriptions_scope for it. Columns: the
     * variant's, then waiting, notified, oldest. */
    [SQL_DEMAND_LIST] =
        "SELECT " VARIANT_COLUMNS
        ", d.waiting, d.notified,"
        " (SELECT min((SELECT s.created_at FROM restock_subscriptions s"
        "   WHERE s.variant_id = c.variant_id"
        "   AND s.sales_channel_id = c.sales_channel_id"
        "   ORDER BY s.id LIMIT 1))"
        "  FROM demand_counts c WHERE c.variant_id = d.variant_id"
        "  AND c.waiting > 0), d.converted"
        /* The page is cut first, so that only its rows are looked up. */
        " FROM (SELECT variant_id, sum(waiting) AS waiting,"
        "  sum(notified) AS notified, sum(converted) AS converted"
        "  FROM demand_counts GROUP BY variant_id"
        "  HAVING sum(waiting) > 0 ORDER BY 2 DESC, 1 LIMIT ?1 OFFSET ?2) d"
        " JOIN variants v ON v.id = d.variant_id"
        " ORDER BY d.waiting DESC, d.variant_id",
    [SQL_DEMAND_COUNT] =
        "SELECT count(DISTINCT variant_id) FROM demand_counts"
        " WHERE waiting > 0",
    [SQL_DEMAND_LIST_CHANNEL] =
        "SELECT " VARIANT_COLUMNS
        ", d.waiting, d.notified,"
        " (SELECT s.created_at FROM restock_subscriptions s"
        "  WHERE s.variant_id = d.variant_id"
        "  AND s.sales_channel_id = d.sales_channel_id"
        "  ORDER BY s.id LIMIT 1), d.converted"
        " FROM (SELECT variant_id, sales_channel_id, waiting, notified,"
        "  converted"
        "  FROM demand_counts WHERE sales_channel_id = ?1 AND waiting > 0"
        "  ORDER BY waiting DESC, variant_id LIMIT ?2 OFFSET ?3) d"
        " JOIN variants v ON v.id = d.variant_id"
        " ORDER BY d.waiting DESC, d.variant_id",
    [SQL_DEMAND_COUNT_CHANNEL] =
        "SELECT count(*) FROM demand_counts"
        " WHERE sales_channel_id = ?1 AND waiting > 0",
    /* A variant's restocked events, through events_restocked_variant
     * (migration 016): ?1 the variant, ?2 a status or NULL. */
    [SQL_EVENT_LIST_VARIANT] =
        "SELECT " EVENT_COLUMNS " FROM events WHERE name = " RESTOCKED_SQL
        " AND variant_id = ?1"
        " AND (?2 IS NULL OR status = ?2) ORDER BY id LIMIT ?3 OFFSET ?4",
    [SQL_EVENT_COUNT_VARIANT] =
        "SELECT count(*) FROM events WHERE name = " RESTOCKED_SQL
        " AND variant_id = ?1 AND (?2 IS NULL OR status = ?2)",
};

/* ---- connections and statements ------------------------------------------ */

struct StoreConn {
  sqlite3 *db;
  ConnRole role;
  int wal_frames; /* after the last commit, from the WAL hook */
};

struct StoreStmt {
  sqlite3_stmt *st;
  StoreConn *c;
};

static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames) {
  ((StoreConn *)arg)->wal_frames = frames;
  return SQLITE_OK;
}

static bool memory_uri(const char *uri) {
  return strcmp(uri, ":memory:") == 0 || strncmp(uri, "file::memory:", 13) == 0;
}

static int sq_connect(const char *uri, ConnRole role, StoreConn **out,
                      char **err) {
  /* SQLite's allocation statistics take a global mutex on every malloc and
   * free; nothing here reads them. Only possible before the library
   * initializes, so later calls are refused, harmlessly. */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  int flags = role == CONN_READER ? SQLITE_OPEN_READONLY
                                  : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(uri, &db,
                           flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, NULL);
  if (rc != SQLITE_OK) {
    *err = xasprintf("cannot open database %s: %s", uri,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return RESTOCK_ESTORE;
  }
  /* Storage threads may wait: nobody else waits for them. */
  sqlite3_busy_timeout(db, role == CONN_READER ? 5000 : 2000);
  if (role != CONN_READER) {
    if (sqlite3_db_readonly(db, "main") == 1) {
      *err = xasprintf(
          "cannot write to database %s: the file is read-only (check its "
          "permissions and those of its directory)",
          uri);
      sqlite3_close(db);
      return RESTOCK_ESTORE;
    }
    /* WAL lets readers work beside the writer. synchronous=NORMAL in WAL
     * mode keeps every committed transaction across a crash of the
     * process; durability "full" turns it to FULL (set_durability). */
    const char *setup =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "PRAGMA foreign_keys=ON;"
        "PRAGMA temp_store=MEMORY;";
    char *msg = NULL;
    if (sqlite3_exec(db, setup, NULL, NULL, &msg) != SQLITE_OK) {
      *err = xasprintf("cannot set up database %s: %s", uri,
                       msg ? msg : sqlite3_errmsg(db));
      sqlite3_free(msg);
      sqlite3_close(db);
      return RESTOCK_ESTORE;
    }
  }
  /* A first read opens the WAL and its index now, not at some later read:
   * the descriptors a server holds are there from the start. */
  sqlite3_exec(db, "SELECT 1 FROM sqlite_master LIMIT 1", NULL, NULL, NULL);
  StoreConn *c = xcalloc(1, sizeof *c);
  c->db = db;
  c->role = role;
  if (role != CONN_READER) sqlite3_wal_hook(db, on_wal_commit, c);
  *out = c;
  return 0;
}

static void sq_disconnect(StoreConn *c) {
  if (!c) return;
  sqlite3_close(c->db);
  free(c);
}

static int sq_exec(StoreConn *c, const char *script, char **err) {
  char *msg = NULL;
  if (sqlite3_exec(c->db, script, NULL, NULL, &msg) != SQLITE_OK) {
    *err = xstrdup(msg ? msg : sqlite3_errmsg(c->db));
    sqlite3_free(msg);
    return RESTOCK_ESTORE;
  }
  return 0;
}

static StoreStmt *sq_prepare(StoreConn *c, const char *sql, char **err) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                         NULL) != SQLITE_OK) {
    *err = xstrdup(sqlite3_errmsg(c->db));
    return NULL;
  }
  StoreStmt *s = xmalloc(sizeof *s);
  s->st = st;
  s->c = c;
  return s;
}

static void sq_finalize(StoreStmt *s) {
  if (!s) return;
  sqlite3_finalize(s->st);
  free(s);
}

static void sq_bind_null(StoreStmt *s, int i) { sqlite3_bind_null(s->st, i); }
static void sq_bind_int(StoreStmt *s, int i, long long v) {
  sqlite3_bind_int64(s->st, i, v);
}
static void sq_bind_double(StoreStmt *s, int i, double v) {
  sqlite3_bind_double(s->st, i, v);
}
static void sq_bind_text(StoreStmt *s, int i, const char *v) {
  sqlite3_bind_text(s->st, i, v, -1, SQLITE_TRANSIENT);
}

static int sq_step(StoreStmt *s) {
  int rc = sqlite3_step(s->st);
  if (rc == SQLITE_ROW) return 1;
  if (rc == SQLITE_DONE) return 0;
  return RESTOCK_ESTORE;
}

static void sq_reset(StoreStmt *s) {
  sqlite3_reset(s->st);
  sqlite3_clear_bindings(s->st);
}

static bool sq_column_null(StoreStmt *s, int i) {
  return sqlite3_column_type(s->st, i) == SQLITE_NULL;
}
static long long sq_column_int(StoreStmt *s, int i) {
  return sqlite3_column_int64(s->st, i);
}
static double sq_column_double(StoreStmt *s, int i) {
  return sqlite3_column_double(s->st, i);
}
static const char *sq_column_text(StoreStmt *s, int i) {
  return (const char *)sqlite3_column_text(s->st, i);
}
static long long sq_changes(StoreConn *c, StoreStmt *s) {
  return sqlite3_changes64(c->db);
}
static const char *sq_errmsg(StoreConn *c) { return sqlite3_errmsg(c->db); }
static long long sq_total_changes(StoreConn *c) {
  return sqlite3_total_changes64(c->db);
}

static bool sq_in_transaction(StoreConn *c) {
  return sqlite3_get_autocommit(c->db) == 0;
}
static void sq_row_triggers(StoreConn *c, bool on) {
  sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, on ? 1 : 0,
                    (int *)NULL);
}
static long long sq_last_insert_id(StoreConn *c) {
  return sqlite3_last_insert_rowid(c->db);
}

static void sq_set_durability(StoreConn *c, Durability d) {
  sqlite3_exec(c->db,
               d == DURABILITY_FULL ? "PRAGMA synchronous=FULL"
                                    : "PRAGMA synchronous=NORMAL",
               NULL, NULL, NULL);
}

static bool sq_private_uri(const char *uri) { return memory_uri(uri); }

/* ---- the server's lock and checkpoints ------------------------------------
 */

/* WAL frames written since the last checkpoint pass past which the writer
 * wakes the checkpoint thread (SQLite's own default threshold). A pass over
 * 1000 frames copies each hot page once. */
#define CHECKPOINT_FRAMES 1000
/* Under a steady stream of commits a concurrent checkpoint never quite
 * catches up, and SQLite restarts the WAL only once one has. Past this
 * many frames (32 MiB) the writer checkpoints itself after a commit: it is
 * the only writer, so that pass completes, and the next transaction starts
 * the WAL over. It costs the writer what the checkpoint thread left (a few
 * frames) and two fsyncs; the loop never waits for it. */
#define CATCH_UP_FRAMES 8192
/* How often the checkpoint thread looks again while frames remain. */
#define CHECKPOINT_RETRY_MS 200

typedef struct {
  char *path;
  int lock_fd; /* -1 for a database in memory */
  /* The checkpoint thread. */
  uv_thread_t thread;
  bool thread_started;
  uv_mutex_t mu;
  uv_cond_t cond;
  bool stop;
  bool wanted;       /* the writer asked for a pass */
  int backfilled_at; /* WAL frames when the last pass was asked for */
  int page_size;
} SqliteServer;

static int read_pid(int fd) {
  char buf[32] = "";
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = '\0';
  return atoi(buf);
}

static int sq_server_open(const char *uri, void **state, char **err) {
  SqliteServer *s = xcalloc(1, sizeof *s);
  s->path = xstrdup(uri);
  s->lock_fd = -1;
  s->page_size = 4096;
  if (!memory_uri(uri)) {
    /* One server per SQLite file: the lock file beside the database is
     * held with flock for the process's life, and released by the kernel
     * however the process ends (SIGKILL too). It is never removed, so two
     * servers can never lock two different files of one name. */
    char *lock = xasprintf("%s.lock", uri);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      *err =
          xasprintf("cannot open the lock file %s: %s", lock, strerror(errno));
      free(lock);
      free(s->path);
      free(s);
      return RESTOCK_ESTORE;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int pid = read_pid(fd);
      *err = xasprintf(
          "the database %s is in use by another restockd (PID %d, lock file "
          "%s): a SQLite file serves one server at a time; use PostgreSQL to "
          "run several nodes",
          uri, pid, lock);
      close(fd);
      free(lock);
      free(s->path);
      free(s);
      return RESTOCK_EBUSY;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
      log_warn("cannot write this process's PID into %s: %s", lock,
               strerror(errno));
    free(lock);
    s->lock_fd = fd;
  }
  uv_mutex_init(&s->mu);
  uv_cond_init(&s->cond);
  *state = s;
  return 0;
}

/* Writes the database file's pages out to the disk (fdatasync). SQLite
 * syncs the file only after a checkpoint that reached the WAL's end, and
 * under a steady stream of commits only the writer's catch-up does
 * (CATCH_UP_FRAMES): its sync then found every page the passes before had
 * copied still to be written, and held the writer 5-10 ms each time, every
 * third of a second. (A pass reaches the end only if no commit came while
 * it copied: SQLite compares with the WAL's size as the pass ends, and
 * `log` is its size as the pass began.) Synced here after every pass, the
 * catch-up finds only its own few pages. */
static void flush_database(sqlite3 *db) {
  sqlite3_file *f = NULL;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) ==
          SQLITE_OK &&
      f && f->pMethods)
    f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
}

/* The checkpoint thread: passive checkpoints through a connection of its
 * own, which copy what they can of the WAL into the database without
 * waiting for (or blocking) the writer. */
static void checkpoint_thread(void *arg) {
  SqliteServer *s = arg;
  pthread_setname_np(pthread_self(), "restockd-ckpt");
  sqlite3 *db = NULL;
  uv_mutex_lock(&s->mu);
  while (!s->stop) {
    if (!s->wanted) {
      uv_cond_wait(&s->cond, &s->mu);
      continue;
    }
    s->wanted = false;
    uv_mutex_unlock(&s->mu);
    if (!db) {
      /* A connection learns that the database is in WAL mode only when it
       * first reads it: until then a checkpoint does nothing. */
      if (sqlite3_open_v2(s->path, &db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                          NULL) != SQLITE_OK ||
          sqlite3_exec(db, "SELECT 1 FROM sqlite_master LIMIT 1", NULL, NULL,
                       NULL) != SQLITE_OK) {
        sqlite3_close(db);
        db = NULL;
      } else {
        sqlite3_busy_timeout(db, 1000);
      }
    }
    int log = 0, done = 0;
    if (db &&
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
                                  &done) == SQLITE_OK &&
        done > 0)
      flush_database(db);
    uv_mutex_lock(&s->mu);
  }
  uv_mutex_unlock(&s->mu);
  sqlite3_close(db);
}

static int sq_server_start(void *state, char **err) {
  SqliteServer *s = state;
  if (s->lock_fd < 0) return 0; /* in memory: nothing to checkpoint */
  uv_thread_options_t o = {UV_THREAD_HAS_STACK_SIZE, 256 << 10};
  if (uv_thread_create_ex(&s->thread, &o, checkpoint_thread, s) != 0) {
    *err = xstrdup("cannot start the checkpoint thread");
    return RESTOCK_ESTORE;
  }
  s->thread_started = true;
  return 0;
}

static void sq_server_stop(void *state) {
  SqliteServer *s = state;
  if (!s->thread_started) return;
  uv_mutex_lock(&s->mu);
  s->stop = true;
  uv_cond_signal(&s->cond);
  uv_mutex_unlock(&s->mu);
  uv_thread_join(&s->thread);
  s->thread_started = false;
}

static void sq_server_close(void *state) {
  SqliteServer *s = state;
  if (!s) return;
  sq_server_stop(s);
  if (s->lock_fd >= 0) close(s->lock_fd);
  uv_mutex_destroy(&s->mu);
  uv_cond_destroy(&s->cond);
  free(s->path);
  free(s);
}

static void sq_after_commit(StoreConn *c, void *state,
                            unsigned long long *wal_bytes) {
  SqliteServer *s = state;
  if (!s || s->lock_fd < 0) return;
  int frames = c->wal_frames;
  /* A WAL frame is a page and its 24-byte header, after a 32-byte file
   * header. */
  unsigned long long bytes =
      32 + (unsigned long long)frames * ((unsigned)s->page_size + 24);
  if (bytes > *wal_bytes) *wal_bytes = bytes;
  uv_mutex_lock(&s->mu);
  if (frames < s->backfilled_at) s->backfilled_at = 0; /* WAL restarted */
  if (frames - s->backfilled_at >= CHECKPOINT_FRAMES) {
    s->backfilled_at = frames;
    s->wanted = true;
    uv_cond_signal(&s->cond);
  }
  uv_mutex_unlock(&s->mu);
  if (frames >= CATCH_UP_FRAMES) {
    /* SQLITE_BUSY while the checkpoint thread holds the checkpoint lock:
     * the next commit tries again. */
    int log = 0, done = 0;
    if (sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
                                  &done) == SQLITE_OK &&
        log == done)
      c->wal_frames = 0;
  }
}

const StoreDriver store_sqlite_driver = {
    .name = "sqlite",
    .sql = sqlite_sql,
    .migrations = sqlite_migrations,
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .exec = sq_exec,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .bind_null = sq_bind_null,
    .bind_int = sq_bind_int,
    .bind_double = sq_bind_double,
    .bind_text = sq_bind_text,
    .step = sq_step,
    .reset = sq_reset,
    .column_null = sq_column_null,
    .column_int = sq_column_int,
    .column_double = sq_column_double,
    .column_text = sq_column_text,
    .changes = sq_changes,
    .total_changes = sq_total_changes,
    .errmsg = sq_errmsg,
    .in_transaction = sq_in_transaction,
    .last_insert_id = sq_last_insert_id,
    .row_triggers = sq_row_triggers,
    .server_open = sq_server_open,
    .server_start = sq_server_start,
    .server_stop = sq_server_stop,
    .server_close = sq_server_close,
    .set_durability = sq_set_durability,
    .after_commit = sq_after_commit,
    .private_uri = sq_private_uri,
};
