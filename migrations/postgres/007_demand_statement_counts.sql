-- The demand counts (005) kept once per statement instead of once per row.
--
-- A row trigger that adds 1 to a scope's counts row makes one more version
-- of that row for every subscription a statement writes, and inside one
-- transaction none of those versions can be pruned: the n-th upsert walks
-- the n-1 before it. A restock chunk of 10,000 notifications of one
-- variant, or a bulk insert of 200,000 subscriptions, grew with the square
-- of its size (minutes for the bulk insert). These triggers read the
-- statement's transition table and change each scope's row once, with the
-- statement's count. The scopes are taken in key order, so that two nodes'
-- statements lock the rows they share in the same order.
--
-- A conversion (an UPDATE of one history row at a time) keeps its row
-- trigger from 005.

DROP TRIGGER demand_subscription_added ON restock_subscriptions;
DROP TRIGGER demand_subscription_removed ON restock_subscriptions;
DROP TRIGGER demand_history_added ON restock_history;
DROP TRIGGER demand_history_removed ON restock_history;

CREATE FUNCTION restock_demand_subscriptions_added() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO demand_counts (variant_id, sales_channel_id, waiting)
    SELECT variant_id, sales_channel_id, count(*) FROM added
    GROUP BY variant_id, sales_channel_id
    ORDER BY variant_id, sales_channel_id
    ON CONFLICT (variant_id, sales_channel_id)
    DO UPDATE SET waiting = demand_counts.waiting + EXCLUDED.waiting;
  RETURN NULL;
END $$;

CREATE FUNCTION restock_demand_subscriptions_removed() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
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

CREATE FUNCTION restock_demand_history_added() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
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

CREATE FUNCTION restock_demand_history_removed() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  UPDATE demand_counts d SET notified = d.notified - g.n,
    converted = d.converted - g.c
    FROM (SELECT variant_id, sales_channel_id, count(*) AS n,
                 count(converted_at) AS c
          FROM removed WHERE status = 'notified'
          GROUP BY variant_id, sales_channel_id
          ORDER BY variant_id, sales_channel_id) g
    WHERE d.variant_id = g.variant_id
      AND d.sales_channel_id = g.sales_channel_id;
  DELETE FROM demand_counts d
    USING (SELECT DISTINCT variant_id, sales_channel_id FROM removed
           WHERE status = 'notified') g
    WHERE d.variant_id = g.variant_id
      AND d.sales_channel_id = g.sales_channel_id
      AND d.waiting <= 0 AND d.notified <= 0;
  RETURN NULL;
END $$;

CREATE TRIGGER demand_subscriptions_added AFTER INSERT ON restock_subscriptions
  REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION restock_demand_subscriptions_added();
CREATE TRIGGER demand_subscriptions_removed
  AFTER DELETE ON restock_subscriptions
  REFERENCING OLD TABLE AS removed
  FOR EACH STATEMENT EXECUTE FUNCTION restock_demand_subscriptions_removed();
CREATE TRIGGER demand_history_added AFTER INSERT ON restock_history
  REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION restock_demand_history_added();
CREATE TRIGGER demand_history_removed AFTER DELETE ON restock_history
  REFERENCING OLD TABLE AS removed
  FOR EACH STATEMENT EXECUTE FUNCTION restock_demand_history_removed();
