-- Multi-warehouse stock, as Medusa's inventory and sales-channel modules
-- model it: stock locations, sales channels selling from some of them,
-- inventory levels of a variant at a location, and publishable API keys
-- naming the channels a storefront sells in.
CREATE TABLE stock_locations (
  id         TEXT PRIMARY KEY,
  name       TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE sales_channels (
  id         TEXT PRIMARY KEY,
  name       TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE sales_channel_locations (
  sales_channel_id TEXT NOT NULL REFERENCES sales_channels (id),
  location_id      TEXT NOT NULL REFERENCES stock_locations (id),
  PRIMARY KEY (sales_channel_id, location_id)
);
CREATE INDEX sales_channel_locations_location
  ON sales_channel_locations (location_id);

-- A variant with at least one level is multi-warehouse: its quantity is
-- sum(stocked - reserved) over its levels, and its inventory_quantity is
-- kept equal to that sum.
CREATE TABLE inventory_levels (
  variant_id        TEXT NOT NULL REFERENCES variants (id),
  location_id       TEXT NOT NULL REFERENCES stock_locations (id),
  stocked_quantity  INTEGER NOT NULL DEFAULT 0,
  reserved_quantity INTEGER NOT NULL DEFAULT 0,
  created_at        TEXT NOT NULL,
  updated_at        TEXT NOT NULL,
  PRIMARY KEY (variant_id, location_id)
);
CREATE INDEX inventory_levels_location ON inventory_levels (location_id);

CREATE TABLE publishable_api_keys (
  id         TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE publishable_api_key_channels (
  key_id           TEXT NOT NULL REFERENCES publishable_api_keys (id),
  sales_channel_id TEXT NOT NULL REFERENCES sales_channels (id),
  PRIMARY KEY (key_id, sales_channel_id)
);
