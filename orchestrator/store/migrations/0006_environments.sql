-- Environments and their settings (issue 11): secret-key rotation with a grace period, a
-- secondary webhook URL (as Nango has), and when a script was switched on or off.

-- After a rotation the previous key keeps working until previous_key_expires_at.
ALTER TABLE environments
    ADD COLUMN previous_secret_key_hash text,
    ADD COLUMN previous_key_expires_at  timestamptz,
    ADD COLUMN secret_key_rotated_at    timestamptz,
    ADD COLUMN webhook_url_secondary    text;

CREATE UNIQUE INDEX environments_previous_secret_key_hash
    ON environments (previous_secret_key_hash) WHERE previous_secret_key_hash IS NOT NULL;

ALTER TABLE deployed_scripts ADD COLUMN enabled_changed_at timestamptz;
