-- Version 3: what a server recovers at start (issue 11).
--
-- switchboard_expire_admissions(): every 'pending' session whose admission
-- token has expired becomes 'failed' (its stream never came: the caller hung up
-- before it, or the server that answered the webhook died), and so does a
-- browser or /v1/realtime session nobody connected to within an hour (its
-- session token lives 5 minutes). Returns how many.
--
-- switchboard_lost_sessions(owner): the sessions still 'active' that the server
-- instance `owner` took. Called by that instance at start, before it takes a
-- call, so each of them was left by a crash; the caller closes each with reason
-- 'server lost' through the tenant's own (row-level secured) door.
--
-- Both cross tenants, so they are SECURITY DEFINER, like the look-ups of
-- version 1, and only switchboard_app may run them.

CREATE OR REPLACE FUNCTION switchboard_expire_admissions()
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    WITH expired AS (
        UPDATE public.voice_sessions AS s
        SET status = 'failed', ended_at = COALESCE(s.ended_at, now())
        WHERE s.status = 'pending' AND s.admitted_at IS NULL
          AND (s.admission_expires_at < now()
               OR (s.admission_hash IS NULL AND s.created_at < now() - interval '1 hour'))
        RETURNING 1
    )
    SELECT count(*)::integer FROM expired
$$;

CREATE OR REPLACE FUNCTION switchboard_lost_sessions(p_owner text)
RETURNS TABLE (tenant_id uuid, session_id uuid, started_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT s.tenant_id, s.id, COALESCE(s.started_at, s.admitted_at, s.created_at)
    FROM public.voice_sessions AS s
    WHERE s.status = 'active' AND s.owner = p_owner
$$;

REVOKE ALL ON FUNCTION switchboard_expire_admissions(), switchboard_lost_sessions(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchboard_expire_admissions(), switchboard_lost_sessions(text)
    TO switchboard_app;
