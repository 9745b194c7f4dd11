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
-- active subscriptions. Counting them per request would read every
-- subscription; these counts are kept by triggers on the subscription and
-- history tables instead, in the same transaction as each write, so the
-- report reads a few index entries per row it shows. demand_variants counts
-- over every scope, demand_scopes per sales channel ('' for unscoped).
-- `notified` counts the history rows notified. A row whose counts are both
-- zero is deleted; the partial indexes hold only variants still waited for.
CREATE TABLE demand_variants (
  variant_id TEXT PRIMARY KEY,
  waiting    INTEGER NOT NULL DEFAULT 0,
  notified   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX demand_variants_rank
  ON demand_variants (waiting DESC, variant_id) WHERE waiting > 0;

CREATE TABLE demand_scopes (
  variant_id       TEXT NOT NULL,
  sales_channel_id TEXT NOT NULL,
  waiting          INTEGER NOT NULL DEFAULT 0,
  notified         INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (variant_id, sales_channel_id)
);
CREATE INDEX demand_scopes_rank
  ON demand_scopes (sales_channel_id, waiting DESC, variant_id)
  WHERE waiting > 0;

INSERT INTO demand_variants (variant_id, waiting)
  SELECT variant_id, count(*) FROM restock_subscriptions GROUP BY variant_id;
INSERT INTO demand_variants (variant_id, notified)
  SELECT variant_id, count(*) FROM restock_history WHERE status = 'notified'
  GROUP BY variant_id
  ON CONFLICT (variant_id) DO UPDATE SET notified = excluded.notified;
INSERT INTO demand_scopes (variant_id, sales_channel_id, waiting)
  SELECT variant_id, sales_channel_id, count(*) FROM restock_subscriptions
  GROUP BY variant_id, sales_channel_id;
INSERT INTO demand_scopes (variant_id, sales_channel_id, notified)
  SELECT variant_id, sales_channel_id, count(*) FROM restock_history
  WHERE status = 'notified' GROUP BY variant_id, sales_channel_id
  ON CONFLICT (variant_id, sales_channel_id)
  DO UPDATE SET notified = excluded.notified;

CREATE TRIGGER demand_subscription_added AFTER INSERT ON restock_subscriptions
BEGIN
  INSERT INTO demand_variants (variant_id, waiting) VALUES (NEW.variant_id, 1)
    ON CONFLICT (variant_id) DO UPDATE SET waiting = waiting + 1;
  INSERT INTO demand_scopes (variant_id, sales_channel_id, waiting)
    VALUES (NEW.variant_id, NEW.sales_channel_id, 1)
    ON CONFLICT (variant_id, sales_channel_id)
    DO UPDATE SET waiting = waiting + 1;
END;

CREATE TRIGGER demand_subscription_removed
  AFTER DELETE ON restock_subscriptions
BEGIN
  UPDATE demand_variants SET waiting = waiting - 1
    WHERE variant_id = OLD.variant_id;
  DELETE FROM demand_variants
    WHERE variant_id = OLD.variant_id AND waiting <= 0 AND notified <= 0;
  UPDATE demand_scopes SET waiting = waiting - 1
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id;
  DELETE FROM demand_scopes
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id
      AND waiting <= 0 AND notified <= 0;
END;

CREATE TRIGGER demand_history_added AFTER INSERT ON restock_history
  WHEN NEW.status = 'notified'
BEGIN
  INSERT INTO demand_variants (variant_id, notified)
    VALUES (NEW.variant_id, 1)
    ON CONFLICT (variant_id) DO UPDATE SET notified = notified + 1;
  INSERT INTO demand_scopes (variant_id, sales_channel_id, notified)
    VALUES (NEW.variant_id, NEW.sales_channel_id, 1)
    ON CONFLICT (variant_id, sales_channel_id)
    DO UPDATE SET notified = notified + 1;
END;

CREATE TRIGGER demand_history_removed AFTER DELETE ON restock_history
  WHEN OLD.status = 'notified'
BEGIN
  UPDATE demand_variants SET notified = notified - 1
    WHERE variant_id = OLD.variant_id;
  DELETE FROM demand_variants
    WHERE variant_id = OLD.variant_id AND waiting <= 0 AND notified <= 0;
  UPDATE demand_scopes SET notified = notified - 1
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id;
  DELETE FROM demand_scopes
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id
      AND waiting <= 0 AND notified <= 0;
END;
