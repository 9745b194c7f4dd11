-- The demand report's `converted`: how many of a scope's notifications an
-- order converted (migration 010 sets restock_history.converted_at once).
-- Kept by triggers like the other counts of demand_counts (migration 011).
ALTER TABLE demand_counts ADD COLUMN converted INTEGER NOT NULL DEFAULT 0;

UPDATE demand_counts SET converted = (
  SELECT count(*) FROM restock_history h
  WHERE h.variant_id = demand_counts.variant_id
    AND h.sales_channel_id = demand_counts.sales_channel_id
    AND h.status = 'notified' AND h.converted_at IS NOT NULL);

CREATE TRIGGER demand_history_converted
  AFTER UPDATE OF converted_at ON restock_history
  WHEN NEW.status = 'notified' AND OLD.converted_at IS NULL
    AND NEW.converted_at IS NOT NULL
BEGIN
  UPDATE demand_counts SET converted = converted + 1
    WHERE variant_id = NEW.variant_id
      AND sales_channel_id = NEW.sales_channel_id;
END;

DROP TRIGGER demand_history_removed;
CREATE TRIGGER demand_history_removed AFTER DELETE ON restock_history
  WHEN OLD.status = 'notified'
BEGIN
  UPDATE demand_counts SET notified = notified - 1,
    converted = converted - (OLD.converted_at IS NOT NULL)
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id;
  DELETE FROM demand_counts
    WHERE variant_id = OLD.variant_id
      AND sales_channel_id = OLD.sales_channel_id
      AND waiting <= 0 AND notified <= 0;
END;
