-- Issue 21: two per-environment settings for scripts.
--
-- * script_log_level: the lowest level of a script's `nango.log` lines kept for the environment's runs (debug keeps
--   everything, as before; error keeps only errors). Platform lines (retries, failures) are never filtered.
-- * record_validation: records checked against their nango.yaml model when a script saves them: off (the default,
--   as in Nango), warn (a record that does not match is saved and reported in the run's log with its id and field),
--   reject (it is not saved; reported the same way).
ALTER TABLE environments
    ADD COLUMN script_log_level text NOT NULL DEFAULT 'debug'
        CHECK (script_log_level IN ('debug', 'info', 'warn', 'error')),
    ADD COLUMN record_validation text NOT NULL DEFAULT 'off'
        CHECK (record_validation IN ('off', 'warn', 'reject'));
