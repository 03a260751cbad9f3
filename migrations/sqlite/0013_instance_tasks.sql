-- Each gateway instance's background tasks (listeners included) as its supervisor last
-- reported them: running, restarting (after it ended unexpectedly) or stopped, how often
-- it was restarted, and why it last ended. Removed with the instance when it signs off.
CREATE TABLE instance_tasks (
    instance     TEXT NOT NULL,
    name         TEXT NOT NULL,
    state        TEXT NOT NULL,
    restarts     BIGINT NOT NULL,
    last_failure TEXT,
    PRIMARY KEY (instance, name)
);
