-- Version 5: every version of an agent a call ran on (issue 12, the call trace),
-- and the look-up of a session's tenant that `trace export` starts from.
--
-- The agents row is updated in place by `agent apply`; a call's trace needs the
-- agent exactly as it was when the call started. Each distinct spec an agent
-- has had is kept here under its version: the SHA-256 (64 lowercase hex
-- digits) of the spec's canonical JSON (keys sorted, no spaces, UTF-8; see
-- switchboard.orchestrator.agent_versions). `session.start` names the version
-- the call ran on. Rows are written by `agent apply` and, for an agent applied
-- before this version, by the first call that runs on it; both insert with
-- ON CONFLICT DO NOTHING, so a version is written once and never changes.
--
-- switchboard_app may read and add versions, never change or remove one;
-- row-level security by tenant_id as for every other table.

CREATE TABLE agent_versions (
    tenant_id   uuid NOT NULL,
    agent_id    uuid NOT NULL,
    version     text NOT NULL CHECK (version ~ '^[0-9a-f]{64}$'),
    spec        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, version),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE agent_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON agent_versions
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

REVOKE ALL ON agent_versions FROM switchboard_app;
GRANT SELECT, INSERT ON agent_versions TO switchboard_app;

-- switchboard_session_tenant(session): the tenant whose session it is, or NULL;
-- how `trace export SESSION` finds the tenant before it can look through the
-- tenant's row-level secured door. SECURITY DEFINER like the look-ups of
-- version 1; it answers only the tenant id.

CREATE OR REPLACE FUNCTION switchboard_session_tenant(p_session_id uuid)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT s.tenant_id FROM public.voice_sessions AS s WHERE s.id = p_session_id
$$;

REVOKE ALL ON FUNCTION switchboard_session_tenant(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchboard_session_tenant(uuid) TO switchboard_app;
