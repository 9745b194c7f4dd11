-- A restock's take counts its chunk itself, at the end of its scope,
-- instead of through the statement triggers of 007.
--
-- The triggers change the scope's demand_counts row inside each take, and
-- that row stays locked until the transaction commits: a node taking a
-- variant's chunks held it for all ten of them, so two nodes could never
-- take chunks of one restock at once (a 100,000-subscriber restock ran as
-- one chain of takes, 13-14 ms each). The take now sets restock.counts to
-- 'deferred' (set_config, local to its transaction, undone with its
-- savepoint), these two triggers skip while it is set, and one upsert
-- adds the scope's total and clears the setting (SQL_DEMAND_TAKEN in
-- core/store_pg.c): the row is locked only for the end of the check.
--
-- Every other statement still counts through the triggers.

CREATE OR REPLACE FUNCTION restock_demand_subscriptions_removed()
  RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('restock.counts', true) = 'deferred' THEN
    RETURN NULL;
  END IF;
  UPDATE demand_counts d SET waiting = d.waiting - g.n
    FROM (SELECT variant_id, sales_channel_id, count(*) AS n FROM removed
          GROUP BY variant_id, sales_channel_id
          ORDER BY variant_id, sales_channel_id) g
    WHERE d.variant_id = g.variant_id
      AND d.sales_channel_id = g.sales_channel_id;
  DELETE FROM demand_counts d
    USING (SELECT DISTINCT variant_id, sales_channel_id FROM removed) g
    WHERE d.variant_id = g.variant_id
      AND d.sales_channel_id = g.sales_channel_id
      AND d.waiting <= 0 AND d.notified <= 0;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION restock_demand_history_added()
  RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('restock.counts', true) = 'deferred' THEN
    RETURN NULL;
  END IF;
  INSERT INTO demand_counts (variant_id, sales_channel_id, notified,
                             converted)
    SELECT variant_id, sales_channel_id, count(*), count(converted_at)
    FROM added WHERE status = 'notified'
    GROUP BY variant_id, sales_channel_id
    ORDER BY variant_id, sales_channel_id
    ON CONFLICT (variant_id, sales_channel_id)
    DO UPDATE SET notified = demand_counts.notified + EXCLUDED.notified,
                  converted = demand_counts.converted + EXCLUDED.converted;
  RETURN NULL;
END $$;
