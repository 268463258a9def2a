-- Version 4: call recordings (issue 12).
--
-- recordings: one row per recorded call. The audio itself is an object in the
-- recording store (a local folder or an S3-compatible bucket) at object_key,
-- sealed under a data key of its own (AES-256-GCM); the row holds that data key
-- only wrapped: by the server keyring (key_kind 'keyring', kid names the
-- keyring entry) or by the tenant's RSA public key (key_kind 'rsa'; kid is
-- 'rsa:' and a fingerprint prefix of the key). Deleting a recording is a
-- crypto-shred: wrapped_key becomes NULL (status 'deleted', deleted_at set)
-- before the object goes; the row stays as the record of the deletion.
--
-- recording_id is the row's identity, bound into every signed playback URL, so
-- a URL made for one recording never plays another of the same session.
--
-- Statuses: 'recording' (the call runs, segments are being sealed), 'complete',
-- 'truncated' (the call's writer did not seal its last segment: the readable
-- prefix is kept), 'deleted'. expires_at: when the retention sweep shreds it
-- (NULL: kept until deleted).
--
-- tenants.recording_public_key: the tenant's RSA public key (PEM,
-- SubjectPublicKeyInfo) when its recordings are wrapped for it, so the server
-- cannot play them; NULL: the server keyring wraps them.
--
-- switchboard_expired_recordings(now, limit): the recordings, of any tenant,
-- whose retention ended by `now` and are not deleted yet (a 'recording' row
-- only a day past its expiry: its call has surely ended). SECURITY DEFINER
-- like the look-ups of version 1; the sweep then shreds each through its
-- tenant's row-level secured door.
--
-- The table this replaces (version 1's `recordings`, one bytea per track) was
-- never written by any release; the migration refuses to drop it if it holds
-- rows.

DO $$
BEGIN
    IF EXISTS (SELECT FROM public.recordings) THEN
        RAISE EXCEPTION 'the old recordings table holds rows'
            USING HINT = 'No release wrote it; move its rows away, then migrate again';
    END IF;
END
$$;

DROP TABLE public.recordings;

CREATE TABLE recordings (
    tenant_id           uuid NOT NULL,
    session_id          uuid NOT NULL,
    recording_id        uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    object_key          text NOT NULL CHECK (object_key ~ '^[a-z0-9/._-]+$'),
    status              text NOT NULL DEFAULT 'recording'
                        CHECK (status IN ('recording', 'complete', 'truncated', 'deleted')),
    key_kind            text NOT NULL CHECK (key_kind IN ('keyring', 'rsa')),
    kid                 text NOT NULL CHECK (kid <> ''),
    wrapped_key         bytea,
    caller_encoding     text NOT NULL,          -- 'pcmu' (G.711 mu-law), 'pcm16'
    caller_sample_rate  integer NOT NULL CHECK (caller_sample_rate > 0),  -- Hz
    agent_encoding      text NOT NULL,
    agent_sample_rate   integer NOT NULL CHECK (agent_sample_rate > 0),   -- Hz
    size_bytes          bigint CHECK (size_bytes >= 0),     -- of the sealed object
    duration_ms         bigint CHECK (duration_ms >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    expires_at          timestamptz,
    deleted_at          timestamptz,
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES voice_sessions (tenant_id, id),
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL)),
    CHECK (status = 'deleted' OR wrapped_key IS NOT NULL),
    CHECK (status <> 'deleted' OR wrapped_key IS NULL)
);
CREATE INDEX recordings_expires_idx ON recordings (expires_at) WHERE status <> 'deleted';

ALTER TABLE recordings ENABLE ROW LEVEL SECURITY;
ALTER TABLE recordings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON recordings
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

REVOKE ALL ON recordings FROM switchboard_app;
GRANT SELECT, INSERT, UPDATE ON recordings TO switchboard_app;  -- no DELETE: rows stay

ALTER TABLE tenants ADD COLUMN recording_public_key text
    CHECK (recording_public_key LIKE '-----BEGIN PUBLIC KEY-----%');
GRANT UPDATE (recording_public_key) ON tenants TO switchboard_app;

CREATE OR REPLACE FUNCTION switchboard_expired_recordings(p_now timestamptz, p_limit integer)
RETURNS TABLE (tenant_id uuid, session_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT r.tenant_id, r.session_id
    FROM public.recordings AS r
    WHERE r.status <> 'deleted'
      AND r.expires_at <= p_now
      AND (r.status <> 'recording' OR r.expires_at <= p_now - interval '1 day')
    ORDER BY r.expires_at
    LIMIT p_limit
$$;

REVOKE ALL ON FUNCTION switchboard_expired_recordings(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchboard_expired_recordings(timestamptz, integer)
    TO switchboard_app;
