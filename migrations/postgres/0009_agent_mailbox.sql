-- The agents' mailbox (IMAP, POP3). A ticket's message has a UID from one gateway-wide
-- counter; every change of the ticket clears it (the message is replaced), and the
-- mailbox lister gives the ticket the next UID. So UIDs only grow and are never reused,
-- and one UIDVALIDITY (fixed here, at creation) serves every folder.
ALTER TABLE tickets ADD COLUMN mailbox_uid BIGINT;
-- Octets of the rendered message, kept once computed (RFC822.SIZE for a whole folder).
ALTER TABLE tickets ADD COLUMN mailbox_size BIGINT;
CREATE UNIQUE INDEX tickets_mailbox_uid ON tickets(mailbox_uid);
CREATE INDEX tickets_mailbox_unlisted ON tickets(id) WHERE mailbox_uid IS NULL;
INSERT INTO counters (name, value) VALUES ('mailbox_uid', 0);
INSERT INTO counters (name, value) VALUES ('mailbox_uidvalidity', CAST(EXTRACT(EPOCH FROM now()) AS BIGINT));

-- \Seen is per agent: the UID of the ticket's message the agent has seen.
CREATE TABLE mailbox_seen (
    agent_id  BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    uid       BIGINT NOT NULL,
    PRIMARY KEY (agent_id, ticket_id)
);

-- Ticket messages an agent deleted from the POP3 view (DELE): hidden there for that agent
-- only, until the ticket changes (its new message has a new UID).
CREATE TABLE pop3_fetched (
    agent_id  BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    uid       BIGINT NOT NULL,
    PRIMARY KEY (agent_id, ticket_id)
);

-- What the mail client stores in the agent's own folders (drafts, sent, trash).
CREATE TABLE mailbox_messages (
    id            BIGSERIAL PRIMARY KEY,
    agent_id      BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    folder        TEXT NOT NULL,                      -- drafts | sent | trash
    uid           BIGINT NOT NULL UNIQUE,
    flags         TEXT NOT NULL DEFAULT '',           -- space separated, as the client set them
    internal_date BIGINT NOT NULL,
    raw           BYTEA NOT NULL
);
CREATE INDEX mailbox_messages_folder ON mailbox_messages(agent_id, folder, uid);
