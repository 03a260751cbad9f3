-- A list by assignee (an agent's INBOX, `assignee:anna`, `assignee:none`) is shown newest
-- first, a page at a time: with the number in the index the database reads the page's
-- tickets in order and stops, instead of sorting every ticket of the assignee (at 250,000
-- tickets on SQLite: 0.5 ms instead of 90 ms for `status:open assignee:none`).
DROP INDEX tickets_assignee;
CREATE INDEX tickets_assignee ON tickets(assignee_id, number);
