-- The full-text vector is no longer computed inside the transaction that stores an item
-- (to_tsvector costs milliseconds per mail): intake lists new items in search_pending,
-- `serve` fills `search` in the background, and a full-text search first fills what is
-- left (see store::Store::catch_up_search_index). Several instances share the list safely
-- (FOR UPDATE SKIP LOCKED).
ALTER TABLE items ALTER COLUMN search DROP EXPRESSION;
CREATE TABLE search_pending (
    item_id BIGINT PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE
);
-- Mail bodies compress with lz4 at a fraction of the default's (pglz) cost.
ALTER TABLE items ALTER COLUMN raw SET COMPRESSION lz4;
ALTER TABLE items ALTER COLUMN text SET COMPRESSION lz4;
ALTER TABLE items ALTER COLUMN html SET COMPRESSION lz4;
ALTER TABLE outbox ALTER COLUMN raw SET COMPRESSION lz4;
