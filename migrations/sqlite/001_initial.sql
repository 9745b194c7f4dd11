-- The catalogue restockd needs to judge stock: product variants, as Medusa
-- models them.
CREATE TABLE variants (
  id                 TEXT PRIMARY KEY,
  product_id         TEXT,
  sku                TEXT,
  title              TEXT,
  inventory_quantity INTEGER NOT NULL DEFAULT 0,
  allow_backorder    INTEGER NOT NULL DEFAULT 0,
  manage_inventory   INTEGER NOT NULL DEFAULT 1,
  created_at         TEXT NOT NULL,
  updated_at         TEXT NOT NULL
);

-- Active restock subscriptions. sales_channel_id is '' for an unscoped
-- subscription, so that the unique index covers it (SQLite treats NULLs as
-- distinct). The rowid gives subscription order: oldest first.
CREATE TABLE restock_subscriptions (
  id               INTEGER PRIMARY KEY,
  variant_id       TEXT NOT NULL,
  sales_channel_id TEXT NOT NULL DEFAULT '',
  email            TEXT NOT NULL,
  created_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX restock_subscriptions_key
  ON restock_subscriptions (variant_id, sales_channel_id, email);
CREATE INDEX restock_subscriptions_email ON restock_subscriptions (email);

-- Subscriptions that were notified, kept as history.
CREATE TABLE restock_history (
  id               INTEGER PRIMARY KEY,
  variant_id       TEXT NOT NULL,
  sales_channel_id TEXT NOT NULL DEFAULT '',
  email            TEXT NOT NULL,
  created_at       TEXT NOT NULL,
  notified_at      TEXT NOT NULL
);
CREATE INDEX restock_history_variant ON restock_history (variant_id);
CREATE INDEX restock_history_email ON restock_history (email);

-- Small key/value settings the server keeps for itself (the generated
-- unsubscribe secret, for one).
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
