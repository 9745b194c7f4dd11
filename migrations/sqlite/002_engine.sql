-- Scheduled restock checks: at most one per variant. A change that finds a
-- check already scheduled leaves it alone, so changes within trigger_delay
-- collapse into one check and a later change does not postpone it. due_at is
-- in milliseconds since the Unix epoch, so it survives a restart.
CREATE TABLE restock_checks (
  variant_id TEXT PRIMARY KEY,
  due_at     INTEGER NOT NULL
);
CREATE INDEX restock_checks_due ON restock_checks (due_at);

-- The outbox: every event, written in the transaction that caused it.
-- status sums up its deliveries: 'pending' while any is pending, 'dead' once
-- any is dead (and none pending), else 'delivered'.
CREATE TABLE events (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  data       TEXT NOT NULL,
  status     TEXT NOT NULL DEFAULT 'pending',
  attempts   INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX events_name ON events (name, id);
CREATE INDEX events_status ON events (status, id);

-- One row per (event, handler subscribed to its name when it was emitted).
-- A pending delivery is due at next_at (ms since the epoch); while a handler
-- runs, next_at is pushed past its timeout (a lease), so that a delivery cut
-- short by a crash is retried after a restart.
CREATE TABLE deliveries (
  event_id     INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
  handler      TEXT NOT NULL,
  status       TEXT NOT NULL DEFAULT 'pending',
  attempts     INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  next_at      INTEGER NOT NULL,
  last_error   TEXT,
  updated_at   TEXT NOT NULL,
  PRIMARY KEY (event_id, handler)
);
CREATE INDEX deliveries_due ON deliveries (status, next_at);

-- Subscriptions of one scope in subscription order (the rowid completes the
-- index), for the restock check.
CREATE INDEX restock_subscriptions_scope
  ON restock_subscriptions (variant_id, sales_channel_id);
