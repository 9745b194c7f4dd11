-- The web console (issue 17; SQLite's 011 and 013): its sessions, and the
-- counts the demand report ranks by.
CREATE TABLE admin_sessions (
  selector       text COLLATE "C" PRIMARY KEY,
  validator_hash text NOT NULL,
  created_at     timestamptz NOT NULL,
  expires_at     bigint NOT NULL
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

-- One row per scope of a variant (sales_channel_id '' for unscoped): its
-- active subscriptions, its notifications and those converted, kept by the
-- triggers below in the same transaction as each write. A row whose counts
-- are all zero goes.
CREATE TABLE demand_counts (
  variant_id       text COLLATE "C" NOT NULL,
  sales_channel_id text COLLATE "C" NOT NULL,
  waiting          bigint NOT NULL DEFAULT 0,
  notified         bigint NOT NULL DEFAULT 0,
  converted        bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (variant_id, sales_channel_id)
);
CREATE INDEX demand_counts_channel ON demand_counts (sales_channel_id);

INSERT INTO demand_counts (variant_id, sales_channel_id, waiting)
  SELECT variant_id, sales_channel_id, count(*) FROM restock_subscriptions
  GROUP BY variant_id, sales_channel_id;
INSERT INTO demand_counts (variant_id, sales_channel_id, notified, converted)
  SELECT variant_id, sales_channel_id, count(*), count(converted_at)
  FROM restock_history WHERE status = 'notified'
  GROUP BY variant_id, sales_channel_id
  ON CONFLICT (variant_id, sales_channel_id) DO UPDATE
  SET notified = EXCLUDED.notified, converted = EXCLUDED.converted;

CREATE FUNCTION restock_demand_subscriptions() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO demand_counts (variant_id, sales_channel_id, waiting)
      VALUES (NEW.variant_id, NEW.sales_channel_id, 1)
      ON CONFLICT (variant_id, sales_channel_id)
      DO UPDATE SET waiting = demand_counts.waiting + 1;
  ELSE
    UPDATE demand_counts SET waiting = waiting - 1
      WHERE variant_id = OLD.variant_id
        AND sales_channel_id = OLD.sales_channel_id;
    DELETE FROM demand_counts
      WHERE variant_id = OLD.variant_id
        AND sales_channel_id = OLD.sales_channel_id
        AND waiting <= 0 AND notified <= 0;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER demand_subscription_added AFTER INSERT ON restock_subscriptions
  FOR EACH ROW EXECUTE FUNCTION restock_demand_subscriptions();
CREATE TRIGGER demand_subscription_removed
  AFTER DELETE ON restock_subscriptions
  FOR EACH ROW EXECUTE FUNCTION restock_demand_subscriptions();

CREATE FUNCTION restock_demand_history() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO demand_counts (variant_id, sales_channel_id, notified)
      VALUES (NEW.variant_id, NEW.sales_channel_id, 1)
      ON CONFLICT (variant_id, sales_channel_id)
      DO UPDATE SET notified = demand_counts.notified + 1;
  ELSIF TG_OP = 'UPDATE' THEN
    UPDATE demand_counts SET converted = converted + 1
      WHERE variant_id = NEW.variant_id
        AND sales_channel_id = NEW.sales_channel_id;
  ELSE
    UPDATE demand_counts SET notified = notified - 1,
      converted = converted - (OLD.converted_at IS NOT NULL)::int
      WHERE variant_id = OLD.variant_id
        AND sales_channel_id = OLD.sales_channel_id;
    DELETE FROM demand_counts
      WHERE variant_id = OLD.variant_id
        AND sales_channel_id = OLD.sales_channel_id
        AND waiting <= 0 AND notified <= 0;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER demand_history_added AFTER INSERT ON restock_history
  FOR EACH ROW WHEN (NEW.status = 'notified')
  EXECUTE FUNCTION restock_demand_history();
CREATE TRIGGER demand_history_converted
  AFTER UPDATE OF converted_at ON restock_history
  FOR EACH ROW WHEN (NEW.status = 'notified' AND OLD.converted_at IS NULL
                     AND NEW.converted_at IS NOT NULL)
  EXECUTE FUNCTION restock_demand_history();
CREATE TRIGGER demand_history_removed AFTER DELETE ON restock_history
  FOR EACH ROW WHEN (OLD.status = 'notified')
  EXECUTE FUNCTION restock_demand_history();
