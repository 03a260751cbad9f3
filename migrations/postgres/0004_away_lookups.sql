-- Out-of-office: intake asks, per batch of mail, which tickets got an away agent's note
-- during the absence and which tickets the substitutes watch already.
CREATE INDEX autoresponses_agent ON autoresponses(agent_id, at) WHERE agent_id IS NOT NULL;
CREATE INDEX ticket_watchers_agent ON ticket_watchers(agent_id);
