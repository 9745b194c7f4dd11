-- Deliveries gain two columns, and the table is rebuilt for its new key.
-- `subscriber`: a handler subscribed with each = "subscriber" gets one
-- delivery per email of the event, retried and marked dead on its own,
-- named by that email; '' stands for a delivery of the whole event.
-- `lease_owner`: the node running the delivery while it holds a lease
-- (next_at is then the lease's end), NULL otherwise, so that a server that
-- restarts makes its own leased deliveries due at once instead of waiting
-- for the lease to run out.
CREATE TABLE deliveries_new (
  event_id     INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
  handler      TEXT NOT NULL,
  subscriber   TEXT NOT NULL DEFAULT '',
  status       TEXT NOT NULL DEFAULT 'pending',
  attempts     INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  next_at      INTEGER NOT NULL,
  lease_owner  TEXT,
  last_error   TEXT,
  updated_at   TEXT NOT NULL,
  PRIMARY KEY (event_id, handler, subscriber)
);
INSERT INTO deliveries_new (event_id, handler, status, attempts, max_attempts,
                            next_at, last_error, updated_at)
  SELECT event_id, handler, status, attempts, max_attempts, next_at,
         last_error, updated_at FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
-- Only pending deliveries are ever looked up by due time, and most rows are
-- delivered: the index holds the pending ones alone.
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
-- Forgetting an email finds its per-subscriber deliveries.
CREATE INDEX deliveries_subscriber ON deliveries (subscriber)
  WHERE subscriber != '';

-- The history says why a subscription ended: 'notified' (restocked), or
-- 'cancelled' (its variant or its sales channel was deleted).
ALTER TABLE restock_history ADD COLUMN status TEXT NOT NULL DEFAULT 'notified';

-- Ids that are never given twice. An unsubscribe token names one
-- subscription by its id: a rowid that came back after the newest row was
-- deleted would let an old token remove a stranger's new subscription.
CREATE TABLE sequences (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
INSERT INTO sequences (name, value)
  SELECT 'restock_subscriptions',
         max(coalesce((SELECT max(id) FROM restock_subscriptions), 0),
             coalesce((SELECT max(id) FROM restock_history), 0));
