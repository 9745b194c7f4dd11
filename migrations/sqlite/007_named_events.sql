-- events_name (name, id) served no query: the listing's optional filter
-- "(?1 IS NULL OR name = ?1)" is planned as a scan. Yet every event paid an
-- index entry for it, subscribed events above all (one per subscription).
-- In its place, an index of the events an operator looks up by name
-- (restocked, and those plugins emit), which leaves subscribed events out:
-- GET /admin/events?name=... walks it instead of the whole table.
DROP INDEX events_name;
CREATE INDEX events_named ON events (name, id)
  WHERE name != 'restock-notification.subscribed';
