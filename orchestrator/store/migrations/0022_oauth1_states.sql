-- OAuth 1.0a connect flows: the temporary credentials a flow's state was issued with (the secret sealed),
-- needed to sign the access-token request once the provider sends the user back
ALTER TABLE oauth_states
    ADD COLUMN request_token text,
    ADD COLUMN request_token_secret bytea;
