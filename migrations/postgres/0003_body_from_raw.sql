-- The same column as on SQLite, always 0 here: PostgreSQL keeps text and HTML (compressed
-- by TOAST) because its full-text vector is computed from them in SQL.
ALTER TABLE items ADD COLUMN body_from_raw BIGINT NOT NULL DEFAULT 0;
