-- Gateway instances sharing this database. Each renews alive_until (milliseconds by the
-- database's clock) every few seconds; one whose time ran out is dead, and its leases and
-- outbox claims go to the others. `host` and `pid` name its process: a start on the same
-- host takes over at once from an instance whose process is gone.
CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    alive_until BIGINT NOT NULL
);

-- Work that one instance at a time does: polling a queue (`poll:<queue id>`), listing
-- the agents' mailbox (`mailbox lister`). Held for as long as the holder is alive.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL
);

-- The instance sending an outbox entry now; NULL when none. `reclaims` counts the times
-- an entry was taken over from an instance that died with it claimed: the one mail that
-- instance may have handed to the upstream without recording it.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN reclaims BIGINT NOT NULL DEFAULT 0;
