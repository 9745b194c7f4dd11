-- The subscription's whole life (issue 15; SQLite's 009).
--
-- What a shopper asked for: the units they want (notified only once the
-- scope holds that many) and their language, both optional.
ALTER TABLE restock_subscriptions ADD COLUMN quantity bigint,
                                  ADD COLUMN locale text;
ALTER TABLE restock_history ADD COLUMN quantity bigint,
                            ADD COLUMN locale text;

-- Subscriptions waiting for their confirmation (double opt-in), apart from
-- the active ones; a confirmed one moves to restock_subscriptions under the
-- same id. confirm_sent_at (ms) limits repeated confirmation mails to one a
-- minute.
CREATE TABLE restock_pending (
  id               bigint PRIMARY KEY,
  variant_id       text COLLATE "C" NOT NULL,
  sales_channel_id text COLLATE "C" NOT NULL DEFAULT '',
  email            text COLLATE "C" NOT NULL,
  created_at       timestamptz NOT NULL,
  quantity         bigint,
  locale           text,
  confirm_sent_at  bigint NOT NULL
);
CREATE UNIQUE INDEX restock_pending_key
  ON restock_pending (email, variant_id, sales_channel_id);
-- Forgetting an email finds its confirmation_requested events.
CREATE INDEX events_confirm_email ON events ((data ->> 'email'))
  WHERE name = 'restock-notification.confirmation_requested';
