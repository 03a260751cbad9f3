-- mticket schema (PostgreSQL). Times are Unix seconds, flags 0/1 integers: the sqlx Any
-- driver decodes only integers, floats, text and blobs.

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE queues (
    id                 BIGSERIAL PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    address            TEXT NOT NULL UNIQUE,          -- lower-case
    friendly_name      TEXT NOT NULL DEFAULT '',
    smtp_host          TEXT NOT NULL DEFAULT '',      -- '' = no upstream SMTP
    smtp_port          BIGINT NOT NULL DEFAULT 0,
    smtp_tls           TEXT NOT NULL DEFAULT 'starttls',
    pop3_host          TEXT NOT NULL DEFAULT '',      -- '' = fed only by the inbound listener
    pop3_port          BIGINT NOT NULL DEFAULT 0,
    pop3_tls           TEXT NOT NULL DEFAULT 'implicit',
    login              TEXT NOT NULL DEFAULT '',
    password           TEXT NOT NULL DEFAULT '',      -- needed in clear to log in upstream
    tls_ca             TEXT NOT NULL DEFAULT '',      -- extra trusted CA (PEM) for this queue's servers
    autoresponder      BIGINT NOT NULL DEFAULT 1,
    autoresponder_text TEXT NOT NULL DEFAULT '',
    enabled            BIGINT NOT NULL DEFAULT 1,
    reply_quote        TEXT NOT NULL DEFAULT 'last',  -- none | last | last3 | all
    on_closed          TEXT NOT NULL DEFAULT 'reopen',-- reopen | new_ticket
    salutation         TEXT NOT NULL DEFAULT '',      -- neutral @Briefanrede@ without a customer
    last_poll_at       BIGINT,
    last_poll_ok       BIGINT,
    last_poll_message  TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL
);

CREATE TABLE agents (
    id               BIGSERIAL PRIMARY KEY,
    login            TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    email            TEXT NOT NULL,                   -- lower-case
    password_hash    TEXT NOT NULL,                   -- argon2 PHC string
    is_admin         BIGINT NOT NULL DEFAULT 0,
    attachment_check BIGINT NOT NULL DEFAULT 1,
    away_from        BIGINT,
    away_until       BIGINT,
    away_text        TEXT NOT NULL DEFAULT '',
    substitute_id    BIGINT REFERENCES agents(id) ON DELETE SET NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE agent_queues (
    agent_id BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    queue_id BIGINT NOT NULL REFERENCES queues(id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, queue_id)
);

-- Kunden, imported from the ERP's address book.
CREATE TABLE customers (
    id                BIGSERIAL PRIMARY KEY,
    number            TEXT NOT NULL UNIQUE,
    company1          TEXT NOT NULL DEFAULT '',
    company2          TEXT NOT NULL DEFAULT '',
    salutation        TEXT NOT NULL DEFAULT '',
    first_name        TEXT NOT NULL DEFAULT '',
    last_name         TEXT NOT NULL DEFAULT '',
    street            TEXT NOT NULL DEFAULT '',
    house_no          TEXT NOT NULL DEFAULT '',
    zip               TEXT NOT NULL DEFAULT '',
    city              TEXT NOT NULL DEFAULT '',
    letter_salutation TEXT NOT NULL DEFAULT '',
    delivery_block    BIGINT NOT NULL DEFAULT 0,      -- Liefersperre
    updated_at        BIGINT NOT NULL
);

CREATE TABLE customer_emails (
    customer_id BIGINT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    address     TEXT NOT NULL,                        -- lower-case
    PRIMARY KEY (customer_id, address)
);
CREATE INDEX customer_emails_address ON customer_emails(address);

-- Belege, imported from the ERP.
CREATE TABLE documents (
    id              BIGSERIAL PRIMARY KEY,
    number          TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL DEFAULT '',
    date            TEXT NOT NULL DEFAULT '',
    customer_number TEXT NOT NULL DEFAULT '',
    description     TEXT NOT NULL DEFAULT '',
    updated_at      BIGINT NOT NULL
);

CREATE TABLE statuses (
    id        BIGSERIAL PRIMARY KEY,
    key       TEXT NOT NULL UNIQUE,                   -- system key or the admin's name
    name_en   TEXT NOT NULL,
    name_de   TEXT NOT NULL,
    is_closed BIGINT NOT NULL DEFAULT 0,
    is_system BIGINT NOT NULL DEFAULT 0,
    position  BIGINT NOT NULL DEFAULT 100
);
INSERT INTO statuses (key, name_en, name_de, is_closed, is_system, position) VALUES
    ('new', 'New', 'Neu', 0, 1, 1),
    ('open', 'Open', 'Offen', 0, 1, 2),
    ('waiting', 'Waiting', 'Wartet', 0, 1, 3),
    ('closed', 'Closed', 'Geschlossen', 1, 1, 4),
    ('merged', 'Merged', 'Zusammengeführt', 1, 1, 5);

CREATE TABLE tags (
    id   BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE tickets (
    id              BIGSERIAL PRIMARY KEY,
    number          BIGINT NOT NULL UNIQUE,
    subject         TEXT NOT NULL,
    queue_id        BIGINT NOT NULL REFERENCES queues(id),
    assignee_id     BIGINT REFERENCES agents(id) ON DELETE SET NULL,
    status_id       BIGINT NOT NULL REFERENCES statuses(id),
    priority        TEXT NOT NULL DEFAULT 'low',      -- low | medium | high
    due_date        TEXT,                             -- YYYY-MM-DD, "Bearbeitung bis"
    billable        BIGINT NOT NULL DEFAULT 0,        -- "Berechnen"
    customer_id     BIGINT REFERENCES customers(id) ON DELETE SET NULL,
    creator_address TEXT NOT NULL,
    document_id     BIGINT REFERENCES documents(id) ON DELETE SET NULL,
    spoof_suspect   BIGINT NOT NULL DEFAULT 0,
    merged_into_id  BIGINT REFERENCES tickets(id),
    version         BIGINT NOT NULL DEFAULT 1,        -- bumped on every change
    created_at      BIGINT NOT NULL,
    last_action_at  BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX tickets_queue ON tickets(queue_id, status_id);
CREATE INDEX tickets_assignee ON tickets(assignee_id);
CREATE INDEX tickets_customer ON tickets(customer_id);
CREATE INDEX tickets_creator ON tickets(creator_address);
CREATE INDEX tickets_created ON tickets(created_at);

CREATE TABLE ticket_cc (
    ticket_id BIGINT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    address   TEXT NOT NULL,
    PRIMARY KEY (ticket_id, address)
);
CREATE INDEX ticket_cc_address ON ticket_cc(address);

CREATE TABLE ticket_tags (
    ticket_id BIGINT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    tag_id    BIGINT NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (ticket_id, tag_id)
);

CREATE TABLE ticket_watchers (
    ticket_id BIGINT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    agent_id  BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    PRIMARY KEY (ticket_id, agent_id)
);

CREATE TABLE items (
    id            BIGSERIAL PRIMARY KEY,
    ticket_id     BIGINT NOT NULL REFERENCES tickets(id),
    kind          TEXT NOT NULL,                      -- customer | reply | comment
    agent_id      BIGINT REFERENCES agents(id) ON DELETE SET NULL,
    from_address  TEXT NOT NULL DEFAULT '',
    from_name     TEXT NOT NULL DEFAULT '',
    to_addrs      TEXT NOT NULL DEFAULT '',           -- comma separated
    cc_addrs      TEXT NOT NULL DEFAULT '',
    subject       TEXT NOT NULL DEFAULT '',
    date          BIGINT NOT NULL,                    -- Date header, else received_at
    received_at   BIGINT NOT NULL,
    message_id    TEXT NOT NULL DEFAULT '',
    text          TEXT NOT NULL DEFAULT '',
    html          TEXT,
    raw           BYTEA NOT NULL,
    raw_sha256    TEXT NOT NULL,
    problems      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX items_ticket ON items(ticket_id, date);
CREATE INDEX items_raw_sha256 ON items(raw_sha256);

CREATE TABLE attachments (
    id           BIGSERIAL PRIMARY KEY,
    item_id      BIGINT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    part_id      BIGINT NOT NULL,                     -- to find the bytes again in items.raw
    content_id   TEXT NOT NULL DEFAULT '',
    inline       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX attachments_item ON attachments(item_id);

-- Every Message-ID the gateway received or sent for a ticket: follow-ups by
-- In-Reply-To/References are found here.
CREATE TABLE message_ids (
    message_id TEXT NOT NULL,
    ticket_id  BIGINT NOT NULL REFERENCES tickets(id),
    PRIMARY KEY (message_id, ticket_id)
);

CREATE TABLE history (
    id        BIGSERIAL PRIMARY KEY,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id),
    at        BIGINT NOT NULL,
    agent_id  BIGINT REFERENCES agents(id) ON DELETE SET NULL,
    actor     TEXT NOT NULL,                          -- agent login, customer address or 'system'
    field     TEXT NOT NULL,
    old_value TEXT NOT NULL DEFAULT '',
    new_value TEXT NOT NULL DEFAULT ''
);
CREATE INDEX history_ticket ON history(ticket_id, id);

CREATE TABLE templates (
    id   BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);

CREATE TABLE profiles (
    id       BIGSERIAL PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    filter   TEXT NOT NULL
);

-- Outgoing mail (autoresponses, replies, out-of-office notes, DSNs) waiting for relay.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    queue_id        BIGINT NOT NULL REFERENCES queues(id),
    ticket_id       BIGINT REFERENCES tickets(id),
    agent_id        BIGINT REFERENCES agents(id) ON DELETE SET NULL,
    kind            TEXT NOT NULL,                    -- autoresponse | reply | away | dsn
    mail_from       TEXT NOT NULL,
    rcpt_to         TEXT NOT NULL,                    -- comma separated
    message_id      TEXT NOT NULL,
    raw             BYTEA NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);

-- What POP3 intake took from each queue's mailbox, by UIDL, so a mail that was committed
-- but not yet deleted upstream (crash, dropped QUIT) is never taken twice.
CREATE TABLE pop3_uidls (
    queue_id BIGINT NOT NULL REFERENCES queues(id) ON DELETE CASCADE,
    uidl     TEXT NOT NULL,
    state    TEXT NOT NULL,                           -- taken | too_large
    at       BIGINT NOT NULL,
    PRIMARY KEY (queue_id, uidl)
);

-- Autoresponses and out-of-office notes sent, for the per-sender cap and "once per ticket".
CREATE TABLE autoresponses (
    id        BIGSERIAL PRIMARY KEY,
    sender    TEXT NOT NULL,
    queue_id  BIGINT NOT NULL REFERENCES queues(id) ON DELETE CASCADE,
    ticket_id BIGINT REFERENCES tickets(id),
    kind      TEXT NOT NULL,                          -- autoresponse | away
    agent_id  BIGINT REFERENCES agents(id) ON DELETE SET NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX autoresponses_sender ON autoresponses(sender, at);

-- Full-text index over subject and text of every item.
ALTER TABLE items ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', subject || ' ' || text)) STORED;
CREATE INDEX items_search ON items USING GIN (search);
