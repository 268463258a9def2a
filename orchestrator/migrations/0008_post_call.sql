-- Version 8: post-call hooks (issue 15, point 3).
--
-- post_call_jobs: one per ended call, queued in the transaction that writes its
-- call_logs row; a worker analyses the call (summary and analysis into
-- call_logs.summary) and queues the call.analyzed webhooks in one transaction.
-- state: pending -> running (leased until lease_until) -> done | failed.
--
-- webhook_subscriptions: a tenant's receivers. secret: Standard Webhooks
-- "whsec_" and base64 of random bytes (https://www.standardwebhooks.com/).
-- event_types: a non-empty subset of {call.ended, call.analyzed}.
--
-- webhook_outbox: one row per (event, subscription). id is the `webhook-id`
-- header ("msg_" and 32 hex digits), the same on every attempt, so a receiver
-- drops a repeat. state: pending -> delivered | dead; a pending row is due at
-- next_attempt_at and is leased (lease_until) while one worker posts it.
--
-- Workers claim rows of every tenant, so the claims are SECURITY DEFINER
-- functions (like version 3's) using FOR UPDATE SKIP LOCKED and a lease: two
-- workers or instances never take one row, and a taker that died gives it
-- back when its lease ends. The rest goes through the tenant's own door.

CREATE TABLE post_call_jobs (
    session_id  uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_until timestamptz,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, session_id) REFERENCES voice_sessions (tenant_id, id)
);
CREATE INDEX post_call_jobs_open_idx ON post_call_jobs (created_at)
    WHERE state IN ('pending', 'running');

CREATE TABLE webhook_subscriptions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url         text NOT NULL CHECK (url ~ '^https?://'),
    event_types text[] NOT NULL CHECK (
                    cardinality(event_types) > 0
                    AND event_types <@ ARRAY['call.ended', 'call.analyzed']::text[]),
    secret      text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{32,88}={0,2}$'),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_tenant_idx ON webhook_subscriptions (tenant_id);

CREATE TABLE webhook_outbox (
    id              text PRIMARY KEY CHECK (id ~ '^msg_[0-9a-f]{32}$'),
    tenant_id       uuid NOT NULL,
    subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    session_id      uuid NOT NULL,
    event_type      text NOT NULL CHECK (event_type IN ('call.ended', 'call.analyzed')),
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (subscription_id, session_id, event_type)
);
CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_tenant_idx ON webhook_outbox (tenant_id, created_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['post_call_jobs', 'webhook_subscriptions', 'webhook_outbox'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I'
            ' USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)'
            ' WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
        EXECUTE format('REVOKE ALL ON %I FROM switchboard_app', t);
    END LOOP;
END $$;
GRANT SELECT, INSERT, UPDATE ON post_call_jobs, webhook_outbox TO switchboard_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_subscriptions TO switchboard_app;
-- The analysis is written into the call's log row afterwards.
GRANT UPDATE (summary) ON call_logs TO switchboard_app;

-- Up to p_limit post-call jobs that are pending, or running with an ended
-- lease (their taker died): each becomes running, leased for p_lease_s seconds,
-- one attempt more.
CREATE FUNCTION switchboard_claim_post_call_jobs(p_lease_s double precision, p_limit integer)
RETURNS TABLE (tenant_id uuid, session_id uuid, attempts integer)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    WITH due AS (
        SELECT j.session_id FROM public.post_call_jobs AS j
        WHERE j.state = 'pending' OR (j.state = 'running' AND j.lease_until < now())
        ORDER BY j.created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.post_call_jobs AS j
    SET state = 'running', attempts = j.attempts + 1,
        lease_until = now() + make_interval(secs => p_lease_s), updated_at = now()
    FROM due WHERE j.session_id = due.session_id
    RETURNING j.tenant_id, j.session_id, j.attempts
$$;

-- Up to p_limit outbox rows that are pending, due, and not leased by a live
-- taker: each is leased for p_lease_s seconds.
CREATE FUNCTION switchboard_claim_webhooks(p_lease_s double precision, p_limit integer)
RETURNS TABLE (tenant_id uuid, id text)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    WITH due AS (
        SELECT o.id FROM public.webhook_outbox AS o
        WHERE o.state = 'pending' AND o.next_attempt_at <= now()
          AND (o.lease_until IS NULL OR o.lease_until < now())
        ORDER BY o.next_attempt_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.webhook_outbox AS o
    SET lease_until = now() + make_interval(secs => p_lease_s)
    FROM due WHERE o.id = due.id
    RETURNING o.tenant_id, o.id
$$;

-- Outbox rows by state, all tenants (the metrics gauge).
CREATE FUNCTION switchboard_outbox_depth()
RETURNS TABLE (state text, n bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT o.state, count(*) FROM public.webhook_outbox AS o GROUP BY o.state
$$;

REVOKE ALL ON FUNCTION switchboard_claim_post_call_jobs(double precision, integer),
    switchboard_claim_webhooks(double precision, integer), switchboard_outbox_depth()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchboard_claim_post_call_jobs(double precision, integer),
    switchboard_claim_webhooks(double precision, integer), switchboard_outbox_depth()
    TO switchboard_app;
