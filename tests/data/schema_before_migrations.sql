-- Switchboard's PostgreSQL schema (PostgreSQL 13 or newer).
--
-- Idempotent: applying it again changes nothing and keeps every row, so
-- `switchboard.orchestrator.db.migrate` runs it at every start (in one
-- transaction, under an advisory lock).
--
-- Who is who:
--   * the owner: the role that applies this file. It owns the tables and the
--     SECURITY DEFINER look-up functions below, so it must be a superuser or
--     have BYPASSRLS (row-level security is FORCEd, so it would otherwise see
--     no rows either). The embedded server's `postgres` is a superuser.
--   * switchboard_app: NOLOGIN, owns nothing. The runtime logs in as the owner
--     and runs `SET ROLE switchboard_app` on every connection, so row-level
--     security applies to every query it makes.
--
-- Tenancy: every table carries tenant_id (tenants: id). A transaction sees and
-- writes only the rows of the tenant named by the transaction-local setting
-- app.tenant_id (`SELECT set_config('app.tenant_id', '<uuid>', true)`); with the
-- setting absent or empty it sees nothing. Composite foreign keys
-- (tenant_id, x_id) keep a row from pointing at another tenant's row even when
-- its id is known. Look-ups that must happen before the tenant is known (which
-- agent answers a number, whose API key this is, which session an admission
-- token opens) are the switchboard_* functions at the end.

DO $$
BEGIN
    IF NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'role % cannot own the Switchboard schema', current_user
            USING HINT = 'Apply it as a superuser, or run: ALTER ROLE '
                || quote_ident(current_user) || ' BYPASSRLS';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'switchboard_app') THEN
        BEGIN
            CREATE ROLE switchboard_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database
        END;
    END IF;
    IF NOT pg_has_role(current_user, 'switchboard_app', 'MEMBER') THEN
        EXECUTE format('GRANT switchboard_app TO %I', current_user);
    END IF;
END
$$;

-- Tables ---------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash    text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),  -- sha256 hex
    prefix      text NOT NULL,             -- first 8 characters, for display
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant_idx ON api_keys (tenant_id);

CREATE TABLE IF NOT EXISTS agents (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    spec        jsonb NOT NULL,            -- AgentSpec.to_json()
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE IF NOT EXISTS phone_numbers (
    e164        text PRIMARY KEY CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    tenant_id   uuid NOT NULL,
    agent_id    uuid NOT NULL,
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS phone_numbers_agent_idx ON phone_numbers (tenant_id, agent_id);

CREATE TABLE IF NOT EXISTS voice_sessions (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL,
    agent_id             uuid NOT NULL,
    transport            text NOT NULL CHECK (transport IN ('twilio', 'browser', 'realtime')),
    call_sid             text,
    stream_sid           text,
    from_number          text,
    to_number            text,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'active', 'ended', 'failed')),
    admission_hash       text UNIQUE,      -- sha256 hex of the single-use admission token
    admission_expires_at timestamptz,
    admitted_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    ended_at             timestamptz,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id),
    CHECK (admission_hash IS NULL OR admission_expires_at IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS voice_sessions_tenant_created_idx
    ON voice_sessions (tenant_id, created_at);

CREATE TABLE IF NOT EXISTS call_events (
    tenant_id   uuid NOT NULL,
    session_id  uuid NOT NULL,
    seq         bigint NOT NULL CHECK (seq >= 0),
    type        text NOT NULL,
    ts          timestamptz NOT NULL,
    t_ms        double precision NOT NULL,  -- monotonic ms since the call started
    payload     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (session_id, seq),
    FOREIGN KEY (tenant_id, session_id) REFERENCES voice_sessions (tenant_id, id)
);

CREATE TABLE IF NOT EXISTS call_turns (
    tenant_id   uuid NOT NULL,
    session_id  uuid NOT NULL,
    seq         bigint NOT NULL,            -- the seq of the turn's event
    role        text NOT NULL CHECK (role IN ('caller', 'agent')),
    text        text NOT NULL,
    ts          timestamptz NOT NULL,
    PRIMARY KEY (session_id, seq),
    FOREIGN KEY (tenant_id, session_id) REFERENCES voice_sessions (tenant_id, id),
    FOREIGN KEY (session_id, seq) REFERENCES call_events (session_id, seq)
);

CREATE TABLE IF NOT EXISTS call_logs (
    session_id  uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    agent_id    uuid NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    duration_ms bigint NOT NULL CHECK (duration_ms >= 0),
    turns       integer NOT NULL CHECK (turns >= 0),
    end_reason  text NOT NULL,
    summary     jsonb NOT NULL DEFAULT '{}',
    FOREIGN KEY (tenant_id, session_id) REFERENCES voice_sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS call_logs_tenant_started_idx ON call_logs (tenant_id, started_at);

CREATE TABLE IF NOT EXISTS recordings (
    session_id  uuid NOT NULL,
    tenant_id   uuid NOT NULL,
    track       text NOT NULL CHECK (track IN ('caller', 'agent')),
    sample_rate integer NOT NULL CHECK (sample_rate > 0),  -- Hz
    encoding    text NOT NULL,              -- 'pcm16', 'ulaw', 'alaw'
    data        bytea NOT NULL,
    PRIMARY KEY (session_id, track),
    FOREIGN KEY (tenant_id, session_id) REFERENCES voice_sessions (tenant_id, id)
);

-- The jti of every session token that opened a call: a token admits once.
CREATE TABLE IF NOT EXISTS session_token_uses (
    jti         text PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    session_id  uuid NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,       -- the token's exp: the row may go after it
    FOREIGN KEY (tenant_id, session_id) REFERENCES voice_sessions (tenant_id, id)
);

-- Row-level security ------------------------------------------------------------

DO $$
DECLARE
    t text;
    tenant_column text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'api_keys', 'agents', 'phone_numbers',
                             'voice_sessions', 'call_events', 'call_turns',
                             'call_logs', 'recordings', 'session_token_uses'] LOOP
        tenant_column := CASE WHEN t = 'tenants' THEN 'id' ELSE 'tenant_id' END;
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', t);
        -- NULLIF: once a transaction-local setting has been used, the session
        -- reads it as '' rather than NULL; both mean "no tenant".
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I'
            ' USING (%I = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)'
            ' WITH CHECK (%I = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t, tenant_column, tenant_column);
    END LOOP;
END
$$;

-- Privileges of the application role (no DELETE but on phone_numbers, whose
-- list an agent update replaces) -------------------------------------------------

REVOKE ALL ON tenants, api_keys, agents, phone_numbers, voice_sessions, call_events,
    call_turns, call_logs, recordings, session_token_uses FROM switchboard_app;
GRANT USAGE ON SCHEMA public TO switchboard_app;
GRANT SELECT, INSERT ON tenants TO switchboard_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO switchboard_app;
GRANT SELECT, INSERT, UPDATE ON agents TO switchboard_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON phone_numbers TO switchboard_app;
GRANT SELECT, INSERT, UPDATE ON voice_sessions TO switchboard_app;
GRANT SELECT, INSERT ON call_events TO switchboard_app;
GRANT SELECT, INSERT ON call_turns TO switchboard_app;
GRANT SELECT, INSERT ON call_logs TO switchboard_app;
GRANT SELECT, INSERT, UPDATE ON recordings TO switchboard_app;
GRANT SELECT ON session_token_uses TO switchboard_app;  -- written by switchboard_consume_token

-- Look-ups before the tenant is known ---------------------------------------------
--
-- SECURITY DEFINER: they run as the owner, which bypasses row-level security,
-- and each returns only the few columns its caller needs. search_path is fixed
-- so a caller's temporary objects cannot stand in for the tables.

CREATE OR REPLACE FUNCTION switchboard_number_agent(p_e164 text)
RETURNS TABLE (tenant_id uuid, agent_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT p.tenant_id, p.agent_id FROM public.phone_numbers AS p WHERE p.e164 = p_e164
$$;

CREATE OR REPLACE FUNCTION switchboard_key_tenant(p_key_hash text)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT k.tenant_id FROM public.api_keys AS k
    WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
$$;

-- Single use: the UPDATE takes the row lock, and a concurrent second caller
-- re-checks `admitted_at IS NULL` after the first commits, so it gets no row.
CREATE OR REPLACE FUNCTION switchboard_consume_admission(p_admission_hash text)
RETURNS TABLE (session_id uuid, tenant_id uuid, agent_id uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    UPDATE public.voice_sessions AS s
    SET admitted_at = now()
    WHERE s.admission_hash = p_admission_hash
      AND s.admitted_at IS NULL
      AND s.admission_expires_at > now()
    RETURNING s.id, s.tenant_id, s.agent_id
$$;

CREATE OR REPLACE FUNCTION switchboard_tenant_by_name(p_name text)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT t.id FROM public.tenants AS t WHERE t.name = p_name
$$;

-- A session token's jti is spent once: INSERT ... ON CONFLICT DO NOTHING lets
-- exactly one of any number of concurrent callers in. Nothing is written
-- unless the tenant exists and the session is that tenant's and that agent's.
-- Returns 'ok', 'unknown_tenant', 'unknown_session' or 'reused'.
CREATE OR REPLACE FUNCTION switchboard_consume_token(
    p_jti text, p_tenant_id uuid, p_session_id uuid, p_agent_id uuid, p_expires_at timestamptz)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM public.tenants AS t WHERE t.id = p_tenant_id) THEN
        RETURN 'unknown_tenant';
    END IF;
    IF NOT EXISTS (SELECT FROM public.voice_sessions AS s
                   WHERE s.id = p_session_id AND s.tenant_id = p_tenant_id
                     AND s.agent_id = p_agent_id) THEN
        RETURN 'unknown_session';
    END IF;
    INSERT INTO public.session_token_uses (jti, tenant_id, session_id, expires_at)
    VALUES (p_jti, p_tenant_id, p_session_id, p_expires_at)
    ON CONFLICT (jti) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'reused';
    END IF;
    RETURN 'ok';
END
$$;

REVOKE ALL ON FUNCTION switchboard_number_agent(text), switchboard_key_tenant(text),
    switchboard_consume_admission(text), switchboard_tenant_by_name(text),
    switchboard_consume_token(text, uuid, uuid, uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchboard_number_agent(text), switchboard_key_tenant(text),
    switchboard_consume_admission(text), switchboard_tenant_by_name(text),
    switchboard_consume_token(text, uuid, uuid, uuid, timestamptz) TO switchboard_app;
