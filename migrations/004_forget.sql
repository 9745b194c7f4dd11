-- A person's right to be forgotten reaches the outbox too: their email is
-- in the data of restock-notification.subscribed events (one each) and in
-- the emails arrays of restock-notification.restocked events. These indexes
-- find those events without reading the whole outbox.
CREATE INDEX events_subscribed_email
  ON events (json_extract(data, '$.email'))
  WHERE name = 'restock-notification.subscribed';
CREATE INDEX events_restocked_variant
  ON events (json_extract(data, '$.variant_id'))
  WHERE name = 'restock-notification.restocked';
