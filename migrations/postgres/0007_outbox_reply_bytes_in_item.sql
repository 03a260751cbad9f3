-- A reply's outgoing mail is the bytes of its reply item: the entry names the item and its
-- own `raw` stays empty, so those bytes are written (and logged) once, not twice.
ALTER TABLE outbox ADD COLUMN item_id BIGINT REFERENCES items(id);
