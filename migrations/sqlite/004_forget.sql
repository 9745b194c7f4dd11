-- A person's right to be forgotten reaches the outbox too: their email is
-- in the data of their restock-notification.subscribed events and in the
-- emails arrays of the restock-notification.restocked events they were
-- notified in. A subscription remembers the id of its subscribed event (and
-- keeps it in the history), and restocked events are indexed by variant, so
-- both are found without reading the whole outbox.
ALTER TABLE restock_subscriptions ADD COLUMN subscribed_event_id INTEGER;
ALTER TABLE restock_history ADD COLUMN subscribed_event_id INTEGER;
CREATE INDEX events_restocked_variant
  ON events (json_extract(data, '$.variant_id'))
  WHERE name = 'restock-notification.restocked';
