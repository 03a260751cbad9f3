-- What the mailbox lister takes down when it gives a ticket's message its UID, so that
-- SELECT and FETCH over a folder read rows instead of rendering: the message's header
-- block, whether the newest item is a reply (\Answered) and the tags (keywords, one per
-- line). Rows listed before this have none; the lister lists every ticket again when the
-- header's form (locale, host name, layout) is not the one it last rendered.
ALTER TABLE tickets ADD COLUMN mailbox_header TEXT;
ALTER TABLE tickets ADD COLUMN mailbox_answered BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN mailbox_tags TEXT NOT NULL DEFAULT '';
