-- The newest item with a Message-ID comes straight from the index: with the index on the
-- Message-ID alone, PostgreSQL may answer `ORDER BY id DESC LIMIT 1` by walking the whole
-- items table backwards.
DROP INDEX items_message_id;
CREATE INDEX items_message_id ON items(message_id, id);
