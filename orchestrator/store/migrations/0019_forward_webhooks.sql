-- Issue 19: forward webhooks. A provider webhook is also forwarded to the environment's webhook URLs as Nango
-- forwards it (one `type: "forward"` POST per matched connection, the raw payload when none matched), unless the
-- integration's forward_webhooks is off (on by default, as in Nango). Each payload keeps its delivery attempts.
ALTER TABLE integrations ADD COLUMN forward_webhooks boolean NOT NULL DEFAULT true;
ALTER TABLE webhook_payloads ADD COLUMN forward_attempts jsonb NOT NULL DEFAULT '[]';
