-- A run started from the settings with an OAuth integration instead of a long-lived token:
-- {"client_id", "client_secret", "redirect_uri", "refresh_token"}; `token` holds the current
-- access token. amoCRM rotates both at every renewal, so the pair is written back each time.
-- Wiped with the token when the run ends.
ALTER TABLE importer.runs ADD COLUMN oauth JSONB;
