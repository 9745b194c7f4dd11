-- One index fewer to write per subscription: the unique key leads with the
-- email, so it also serves "every subscription of this email" (forgetting
-- an email), which had an index of its own. Lookups by (variant, channel,
-- email) use it as before; by (variant, channel) in subscription order,
-- restock_subscriptions_scope.
DROP INDEX restock_subscriptions_key;
DROP INDEX restock_subscriptions_email;
CREATE UNIQUE INDEX restock_subscriptions_key
  ON restock_subscriptions (email, variant_id, sales_channel_id);
