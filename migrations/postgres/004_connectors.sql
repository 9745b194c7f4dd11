-- Shop connectors (issue 16; SQLite's 010). task_leases is migration 002's.
--
-- Durable strings for scripts (restock.kv); expires_at (ms since the epoch)
-- only for a script that asks for a time to live.
CREATE TABLE script_kv (
  key        text COLLATE "C" PRIMARY KEY,
  value      text NOT NULL,
  expires_at bigint,
  updated_at timestamptz NOT NULL
);
CREATE INDEX script_kv_expires ON script_kv (expires_at)
  WHERE expires_at IS NOT NULL;

-- Orders a shop reported, by the shop's id, counted once.
CREATE TABLE shop_orders (
  order_id    text COLLATE "C" PRIMARY KEY,
  created_at  timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL
);

-- Conversions: a notification converted by an order, once, with the
-- order's amount for that variant in millionths of the currency's unit.
ALTER TABLE restock_history ADD COLUMN converted_at timestamptz,
                            ADD COLUMN conversion_order_id text,
                            ADD COLUMN conversion_currency text,
                            ADD COLUMN conversion_amount bigint;
CREATE INDEX restock_history_notified ON restock_history (notified_at)
  WHERE status = 'notified';
