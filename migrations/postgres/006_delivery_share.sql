-- A per-subscriber delivery keeps its own share of the event's data, so
-- that claiming it reads a few hundred bytes rather than the whole restocked
-- event (SQLite's 012). NULL for a delivery of the whole event.
ALTER TABLE deliveries ADD COLUMN data jsonb;
