-- Intake stores a customer mail's text and HTML only inside its raw bytes: `body_from_raw = 1`
-- means `text` and `html` are left empty and are what parsing `raw` gives (see
-- store::tickets). Writing the body a second time cost a fifth of intake's throughput.
ALTER TABLE items ADD COLUMN body_from_raw BIGINT NOT NULL DEFAULT 0;
