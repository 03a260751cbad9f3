-- Only customer mails are looked up by their raw bytes' hash (intake recognises a mail it
-- took in before); replies and comments need no entry in that index.
DROP INDEX items_raw_sha256;
CREATE INDEX items_raw_sha256 ON items(raw_sha256) WHERE kind = 'customer';
