-- A restock's take keeps the demand counts of the rows it moves itself:
-- one UPDATE a chunk instead of three trigger statements a row (a
-- subscription's delete, its history row's insert). While demand_bulk
-- holds a row (the take puts one there for its two moving statements, in
-- the same transaction) the two triggers below skip; every other write
-- fires them as before (migration 011).
CREATE TABLE demand_bulk (taking INTEGER NOT NULL);

DROP TRIGGER demand_subscription_removed;
CREATE TRIGGER demand_subscription_removed
  AFTER DELETE ON restock_subscriptions
  WHEN NOT EXISTS (SELECT 1 FROM demand_bulk)
BEGIN
  UPDATE demand_counts SET waiting = waiting - 1
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id;
  DELETE FROM demand_counts
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id
      AND waiting <= 0 AND notified <= 0;
END;

DROP TRIGGER demand_history_added;
CREATE TRIGGER demand_history_added AFTER INSERT ON restock_history
  WHEN NEW.status = 'notified' AND NOT EXISTS (SELECT 1 FROM demand_bulk)
BEGIN
  INSERT INTO demand_counts (variant_id, sales_channel_id, notified)
    VALUES (NEW.variant_id, NEW.sales_channel_id, 1)
    ON CONFLICT (variant_id, sales_channel_id)
    DO UPDATE SET notified = notified + 1;
END;
