-- An agent's reply names the mail it answers by Message-ID: find that item (and with it
-- the ticket and the version answered) without reading the whole items table.
CREATE INDEX items_message_id ON items(message_id);
