-- Version 2: which server instance runs each call.
--
-- owner: the id of the server instance (one `serve`, all its workers) that
-- took the call; NULL while the session is pending. At start an instance looks
-- for the sessions it owned that are still 'active' (it crashed mid-call) and
-- closes them; the partial index keeps that look-up to the live calls.
--
-- switchboard_app reads and writes the column through its table-wide SELECT,
-- INSERT and UPDATE on voice_sessions, and row-level security still applies.

ALTER TABLE voice_sessions ADD COLUMN owner text CHECK (owner <> '');

CREATE INDEX voice_sessions_owner_active_idx ON voice_sessions (owner) WHERE status = 'active';
