-- The console's sessions. A browser logged in with the admin token holds a
-- cookie "SELECTOR.VALIDATOR": the selector finds the row, and only the
-- SHA-256 of the validator is stored, compared in constant time, so that
-- neither a copy of the database nor the timing of a lookup gives anyone a
-- session. Rows live in the database, not in a node's memory, so that every
-- node sharing it (PostgreSQL) knows every session and a logout anywhere
-- ends it everywhere. expires_at is in ms since the epoch.
CREATE TABLE admin_sessions (
  selector       TEXT PRIMARY KEY,
  validator_hash TEXT NOT NULL,
  created_at     TEXT NOT NULL,
  expires_at     INTEGER NOT NULL
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

-- The demand report (GET /admin/reports/demand) ranks variants by their
-- active subscriptions. Counting those per request would read every
-- subscription (95 ms over a million); instead triggers keep one row per
-- scope of a variant (sales_channel_id '' for unscoped) with its active
-- subscriptions (`waiting`) and its history rows notified (`notified`), in
-- the same transaction as each write, and the report reads these counts: a
-- row per scope, not per subscription. One upsert of this table is what a
-- new subscription pays; a rank index on `waiting` would move with every
-- count and cost as much again, so the ranking is sorted at read time. A
-- row whose counts are both zero is deleted.
CREATE TABLE demand_counts (
  variant_id       TEXT NOT NULL,
  sales_channel_id TEXT NOT NULL,
  waiting          INTEGER NOT NULL DEFAULT 0,
  notified         INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (variant_id, sales_channel_id)
) WITHOUT ROWID;
-- The report of one sales channel. Its key does not hold the counts, so
-- they change without touching it.
CREATE INDEX demand_counts_channel ON demand_counts (sales_channel_id);

INSERT INTO demand_counts (variant_id, sales_channel_id, waiting)
  SELECT variant_id, sales_channel_id, count(*) FROM restock_subscriptions
  GROUP BY variant_id, sales_channel_id;
INSERT INTO demand_counts (variant_id, sales_channel_id, notified)
  SELECT variant_id, sales_channel_id, count(*) FROM restock_history
  WHERE status = 'notified' GROUP BY variant_id, sales_channel_id
  ON CONFLICT (variant_id, sales_channel_id)
  DO UPDATE SET notified = excluded.notified;

CREATE TRIGGER demand_subscription_added AFTER INSERT ON restock_subscriptions
BEGIN
  INSERT INTO demand_counts (variant_id, sales_channel_id, waiting)
    VALUES (NEW.variant_id, NEW.sales_channel_id, 1)
    ON CONFLICT (variant_id, sales_channel_id)
    DO UPDATE SET waiting = waiting + 1;
END;

CREATE TRIGGER demand_subscription_removed
  AFTER DELETE ON restock_subscriptions
BEGIN
  UPDATE demand_counts SET waiting = waiting - 1
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id;
  DELETE FROM demand_counts
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id
      AND waiting <= 0 AND notified <= 0;
END;

CREATE TRIGGER demand_history_added AFTER INSERT ON restock_history
  WHEN NEW.status = 'notified'
BEGIN
  INSERT INTO demand_counts (variant_id, sales_channel_id, notified)
    VALUES (NEW.variant_id, NEW.sales_channel_id, 1)
    ON CONFLICT (variant_id, sales_channel_id)
    DO UPDATE SET notified = notified + 1;
END;

CREATE TRIGGER demand_history_removed AFTER DELETE ON restock_history
  WHEN OLD.status = 'notified'
BEGIN
  UPDATE demand_counts SET notified = notified - 1
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id;
  DELETE FROM demand_counts
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id
      AND waiting <= 0 AND notified <= 0;
END;
