-- Several nodes on one database.
--
-- Each running node keeps a row here, refreshed by its heartbeat about once
-- a second (last_seen_at is the database's clock, so that nodes compare it
-- with one clock). `handlers` lists the handlers its plugin.lua subscribed,
-- as [[event, handler, max_attempts, each], ...]: an event written on any
-- node gets a delivery for every handler of a live node, and a node claims
-- only the deliveries it can run (or those no live node can, which fail as
-- they do on one node). GET /admin/nodes lists this table.
CREATE TABLE nodes (
  id           text COLLATE "C" PRIMARY KEY,
  started_at   timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  version      text NOT NULL,
  handlers     jsonb NOT NULL DEFAULT '[]'
);

-- "One node at a time" for named work: a task runs on the node holding its
-- lease, which the holder renews while it works and which any node may take
-- once it has ended (lease_until, ms since the epoch): named restock.every
-- tasks and the retention pruner. (SQLite has the same table, migration
-- 010, where the one process always holds the lease.)
CREATE TABLE task_leases (
  name        text COLLATE "C" PRIMARY KEY,
  owner       text COLLATE "C" NOT NULL,
  lease_until bigint NOT NULL
);

-- Wakes the other nodes when deliveries become due: a node LISTENs on
-- restockd_SCHEMA (the schema of its tables, so that services in schemas
-- of their own do not wake each other) and claims at once. PostgreSQL sends
-- a notification only when the transaction commits, and one per
-- transaction however many statements raised it, so a group commit of 64
-- subscribes wakes each node once. The payload names the node that wrote
-- (its writer sets restockd.node): that node needs no wake-up, it claims
-- what it wrote by itself.
CREATE FUNCTION restock_notify_deliveries() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('restockd_' || TG_TABLE_SCHEMA,
                    coalesce(current_setting('restockd.node', true), ''));
  RETURN NULL;
END $$;

-- Only a statement that inserted rows: a subscribe to an event without
-- handlers inserts none, and wakes nobody.
CREATE FUNCTION restock_notify_written() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM written) THEN
    PERFORM pg_notify('restockd_' || TG_TABLE_SCHEMA,
                      coalesce(current_setting('restockd.node', true), ''));
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER deliveries_written AFTER INSERT ON deliveries
  REFERENCING NEW TABLE AS written
  FOR EACH STATEMENT EXECUTE FUNCTION restock_notify_written();
-- A delivery requeued (an admin retry) or handed back (a node that stops,
-- a lease released) is due again without a new row.
CREATE TRIGGER deliveries_requeued AFTER UPDATE ON deliveries
  FOR EACH ROW
  WHEN (NEW.status = 'pending' AND NEW.lease_owner IS NULL
        AND (OLD.status <> 'pending' OR OLD.lease_owner IS NOT NULL))
  EXECUTE FUNCTION restock_notify_deliveries();
