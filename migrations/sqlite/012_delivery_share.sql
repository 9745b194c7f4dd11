-- A per-subscriber delivery keeps its own share of the event's data (the
-- event less its emails and subscribers, plus that shopper's email and
-- entry), so that claiming it reads a few hundred bytes rather than the
-- whole restocked event, which for a batch of 1,000 shoppers is about
-- 200 KB: reading and decoding the event for each of its deliveries made
-- a restock's cost grow with the square of batch_size. NULL for rows of
-- the whole event, and for per-subscriber rows written before this
-- migration (their share is still cut from the event).
ALTER TABLE deliveries ADD COLUMN data TEXT;
