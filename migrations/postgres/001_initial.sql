-- restockd's schema on PostgreSQL: the tables of migrations/sqlite/001 to
-- 008, written for PostgreSQL. Times are timestamptz (shown as the ISO text
-- every API answer uses, through restock_iso), flags are boolean, event data
-- is jsonb, ids come from sequences, and every identifier and email column
-- sorts bytewise (COLLATE "C"), as SQLite's BINARY does, whatever the
-- database's default collation: listings come out in the same order on both
-- backends, and lower() folds ASCII only, as SQLite's does.
--
-- Times the server computes for scheduling (restock_checks.due_at,
-- deliveries.next_at) stay integers, milliseconds since the epoch, as
-- store.c passes them.

-- A time as the API shows it: UTC ISO 8601 with milliseconds.
CREATE FUNCTION restock_iso(t timestamptz) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;

CREATE TABLE variants (
  id                 text COLLATE "C" PRIMARY KEY,
  product_id         text,
  sku                text,
  title              text,
  inventory_quantity bigint NOT NULL DEFAULT 0,
  allow_backorder    boolean NOT NULL DEFAULT false,
  manage_inventory   boolean NOT NULL DEFAULT true,
  created_at         timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL
);

-- Ids that are never given twice: an unsubscribe token names one
-- subscription by its id, and the id of a subscription's event is known
-- before the event is written. A sequence serves every node at once.
CREATE SEQUENCE restock_subscription_ids AS bigint;
CREATE SEQUENCE event_ids AS bigint;

-- Active subscriptions. sales_channel_id is '' for an unscoped one, as on
-- SQLite, so that the statements store.c runs are the same on both.
CREATE TABLE restock_subscriptions (
  id                  bigint PRIMARY KEY,
  variant_id          text COLLATE "C" NOT NULL,
  sales_channel_id    text COLLATE "C" NOT NULL DEFAULT '',
  email               text COLLATE "C" NOT NULL,
  created_at          timestamptz NOT NULL,
  subscribed_event_id bigint
);
-- One subscription per (email, variant, scope); leading with the email it
-- also finds every subscription of an email (forgetting it).
CREATE UNIQUE INDEX restock_subscriptions_key
  ON restock_subscriptions (email, variant_id, sales_channel_id);
-- A scope's subscriptions in subscription order, for the restock check.
CREATE INDEX restock_subscriptions_scope
  ON restock_subscriptions (variant_id, sales_channel_id, id);

-- Subscriptions that ended: 'notified' (restocked) or 'cancelled' (their
-- variant or sales channel was deleted).
CREATE TABLE restock_history (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  variant_id          text COLLATE "C" NOT NULL,
  sales_channel_id    text COLLATE "C" NOT NULL DEFAULT '',
  email               text COLLATE "C" NOT NULL,
  created_at          timestamptz NOT NULL,
  notified_at         timestamptz NOT NULL,
  subscribed_event_id bigint,
  status              text NOT NULL DEFAULT 'notified'
);
CREATE INDEX restock_history_variant ON restock_history (variant_id);
CREATE INDEX restock_history_email ON restock_history (email);

CREATE TABLE meta (
  key   text COLLATE "C" PRIMARY KEY,
  value text NOT NULL
);

-- Scheduled restock checks, at most one per variant; due_at in ms since
-- the epoch. A node claims a due one with FOR UPDATE SKIP LOCKED.
CREATE TABLE restock_checks (
  variant_id text COLLATE "C" PRIMARY KEY,
  due_at     bigint NOT NULL
);
CREATE INDEX restock_checks_due ON restock_checks (due_at);

-- The outbox. status sums up the event's deliveries: 'pending' while any is
-- pending, 'dead' once any is dead (and none pending), else 'delivered'.
CREATE TABLE events (
  id         bigint PRIMARY KEY DEFAULT nextval('event_ids'),
  name       text COLLATE "C" NOT NULL,
  data       jsonb NOT NULL,
  status     text NOT NULL DEFAULT 'pending',
  attempts   integer NOT NULL DEFAULT 0,
  last_error text,
  created_at timestamptz NOT NULL
);
ALTER SEQUENCE event_ids OWNED BY events.id;
-- What an operator lists: the events not delivered (few), and events by
-- name, leaving out the subscribed ones (one per subscription).
CREATE INDEX events_open ON events (status, id) WHERE status <> 'delivered';
CREATE INDEX events_named ON events (name, id)
  WHERE name <> 'restock-notification.subscribed';
-- Forgetting an email finds the restocked events of a variant.
CREATE INDEX events_restocked_variant ON events ((data ->> 'variant_id'))
  WHERE name = 'restock-notification.restocked';

-- One row per (event, handler), or per (event, handler, subscriber) for a
-- handler subscribed with each = "subscriber" (subscriber '' stands for the
-- whole event). A pending delivery is due at next_at (ms since the epoch);
-- while a node runs it, lease_owner names that node and next_at is the
-- lease's end. seq keeps the order the deliveries were written in, for the
-- listings (SQLite's rowid).
CREATE TABLE deliveries (
  event_id     bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
  handler      text COLLATE "C" NOT NULL,
  subscriber   text COLLATE "C" NOT NULL DEFAULT '',
  status       text NOT NULL DEFAULT 'pending',
  attempts     integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL,
  next_at      bigint NOT NULL,
  lease_owner  text COLLATE "C",
  last_error   text,
  updated_at   timestamptz NOT NULL,
  seq          bigint GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (event_id, handler, subscriber)
);
-- In claim order (next_at, then event_id): a claim of the first few due
-- rows walks the index and stops, however many are due.
CREATE INDEX deliveries_due ON deliveries (next_at, event_id)
  WHERE status = 'pending';
CREATE INDEX deliveries_subscriber ON deliveries (subscriber)
  WHERE subscriber <> '';
-- A node renews and releases its own leases by name.
CREATE INDEX deliveries_lease ON deliveries (lease_owner)
  WHERE lease_owner IS NOT NULL;

-- Multi-warehouse stock, as Medusa models it.
CREATE TABLE stock_locations (
  id         text COLLATE "C" PRIMARY KEY,
  name       text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE sales_channels (
  id         text COLLATE "C" PRIMARY KEY,
  name       text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE sales_channel_locations (
  sales_channel_id text COLLATE "C" NOT NULL REFERENCES sales_channels (id),
  location_id      text COLLATE "C" NOT NULL REFERENCES stock_locations (id),
  PRIMARY KEY (sales_channel_id, location_id)
);
CREATE INDEX sales_channel_locations_location
  ON sales_channel_locations (location_id);

CREATE TABLE inventory_levels (
  variant_id        text COLLATE "C" NOT NULL REFERENCES variants (id),
  location_id       text COLLATE "C" NOT NULL REFERENCES stock_locations (id),
  stocked_quantity  bigint NOT NULL DEFAULT 0,
  reserved_quantity bigint NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL,
  updated_at        timestamptz NOT NULL,
  PRIMARY KEY (variant_id, location_id)
);
CREATE INDEX inventory_levels_location ON inventory_levels (location_id);

CREATE TABLE publishable_api_keys (
  id         text COLLATE "C" PRIMARY KEY,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE publishable_api_key_channels (
  key_id           text COLLATE "C" NOT NULL
                   REFERENCES publishable_api_keys (id),
  sales_channel_id text COLLATE "C" NOT NULL REFERENCES sales_channels (id),
  PRIMARY KEY (key_id, sales_channel_id)
);
