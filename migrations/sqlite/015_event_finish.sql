-- An event's status after one of its deliveries finished, found without
-- walking its deliveries: whether any is still pending is read from this
-- index. Each outcome of a per-subscriber handler (one delivery per shopper,
-- 1,000 to an event by default) had scanned every delivery of the event for
-- a pending one and for their largest attempts: the square of the event's
-- size in all (store_event_finish).
CREATE INDEX deliveries_pending_event ON deliveries (event_id)
  WHERE status = 'pending';
