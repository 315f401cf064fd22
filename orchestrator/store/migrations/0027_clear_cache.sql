-- A full resync asked with emptyCache / full_refresh_and_clear_cache: the run that takes the reset first
-- deletes the sync's records (its models' scopes for the connection and variant), then saves afresh
ALTER TABLE sync_state ADD COLUMN clear_cache boolean NOT NULL DEFAULT false;
