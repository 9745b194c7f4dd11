-- The subscription's whole life (issue 15).
--
-- What a shopper asked for: the units they want (notified only once the
-- scope holds that many) and their language, both optional.
ALTER TABLE restock_subscriptions ADD COLUMN quantity INTEGER;
ALTER TABLE restock_subscriptions ADD COLUMN locale TEXT;
ALTER TABLE restock_history ADD COLUMN quantity INTEGER;
ALTER TABLE restock_history ADD COLUMN locale TEXT;

-- Subscriptions waiting for their confirmation (double opt-in) are kept
-- apart from the active ones: no restock check, throttle or count ever
-- sees them, and the walk that drops the unconfirmed ones reads only
-- them. A confirmed one moves to restock_subscriptions under the same id,
-- so that the tokens already sent for it keep naming it. confirm_sent_at
-- (ms) limits repeated confirmation mails to one a minute.
CREATE TABLE restock_pending (
  id                  INTEGER PRIMARY KEY,
  variant_id          TEXT NOT NULL,
  sales_channel_id    TEXT NOT NULL DEFAULT '',
  email               TEXT NOT NULL,
  created_at          TEXT NOT NULL,
  quantity            INTEGER,
  locale              TEXT,
  confirm_sent_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX restock_pending_key
  ON restock_pending (email, variant_id, sales_channel_id);
