-- The full-text index is no longer written inside the transaction that stores an item:
-- `serve` indexes new items in the background, and a full-text search first indexes what
-- is left (see store::Store::catch_up_search_index). `counters.search_indexed` is the
-- largest item id in the index; item ids only grow.
DROP TRIGGER items_fts_insert;
INSERT INTO counters (name, value) SELECT 'search_indexed', COALESCE(MAX(id), 0) FROM items;
