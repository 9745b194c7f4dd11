-- Shop connectors (issue 16).
--
-- Durable strings for scripts (restock.kv): a poller's cursor, the mapping
-- of a shop's inventory items to variants, the webhook ids already applied.
-- expires_at (ms since the epoch) is set only by a script that asks for a
-- time to live; an expired row reads as absent and is swept by later sets.
CREATE TABLE script_kv (
  key        TEXT PRIMARY KEY,
  value      TEXT NOT NULL,
  expires_at INTEGER,
  updated_at TEXT NOT NULL
);
CREATE INDEX script_kv_expires ON script_kv (expires_at)
  WHERE expires_at IS NOT NULL;

-- Named periodic tasks (restock.every with a name) run on one node at a
-- time: a run starts only on the node that holds the task's lease, which it
-- renews at each run and which another node may take once it has run out
-- (lease_until, ms since the epoch). On SQLite one process owns the file,
-- so its claims always succeed; the table works the same way there.
CREATE TABLE task_leases (
  name        TEXT PRIMARY KEY,
  owner       TEXT NOT NULL,
  lease_until INTEGER NOT NULL
);

-- Orders a shop reported (restock.orders.record), by the shop's id, so that
-- recording one twice (a webhook repeated, a poller that ran again) counts
-- it once. No personal data: the email is only compared, never kept here.
CREATE TABLE shop_orders (
  order_id    TEXT PRIMARY KEY,
  created_at  TEXT NOT NULL,
  recorded_at TEXT NOT NULL
);

-- Conversions: a notification (a history row with status 'notified') whose
-- email ordered its variant within conversion_window is marked converted by
-- that order, with the order's amount for that variant in millionths of the
-- currency's major unit (exact: 49.00 EUR is 49000000). Each notification
-- converts at most once (converted_at is set once).
ALTER TABLE restock_history ADD COLUMN converted_at TEXT;
ALTER TABLE restock_history ADD COLUMN conversion_order_id TEXT;
ALTER TABLE restock_history ADD COLUMN conversion_currency TEXT;
ALTER TABLE restock_history ADD COLUMN conversion_amount INTEGER;
-- The conversions report counts the notifications sent in a period.
CREATE INDEX restock_history_notified ON restock_history (notified_at)
  WHERE status = 'notified';
