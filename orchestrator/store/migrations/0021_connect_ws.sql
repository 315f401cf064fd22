-- Issue 19: Nango's frontend SDK learns how an OAuth popup ended over a WebSocket. The socket's id travels with the
-- flow (`ws_client_id` on the state); the callback writes the outcome on the state, and the API process holding the
-- socket (any replica) reads it there and tells the browser.
ALTER TABLE oauth_states
    ADD COLUMN ws_client_id text,
    ADD COLUMN result       jsonb;
CREATE INDEX oauth_states_ws_idx ON oauth_states (ws_client_id) WHERE ws_client_id IS NOT NULL;
