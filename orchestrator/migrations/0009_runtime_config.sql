-- Version 9: the runtime configuration's API layer (issue 15): what `PUT /config`
-- set, for every worker and every instance of the deployment to apply.
--
-- One row (id = 1). `settings` holds only the values the API set (field -> value;
-- a secret as given: the row is readable by the owner and through the functions
-- below only). `version` grows by one at each write: a worker that has applied
-- version N reloads when it sees another.
--
-- No tenant owns the row, so the app role reaches it only through the two
-- SECURITY DEFINER functions, like the cross-tenant look-ups of version 1.

CREATE TABLE runtime_config (
    id          integer PRIMARY KEY CHECK (id = 1),
    settings    jsonb NOT NULL CHECK (jsonb_typeof(settings) = 'object'),
    version     bigint NOT NULL CHECK (version > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON runtime_config FROM switchboard_app;

CREATE OR REPLACE FUNCTION switchboard_runtime_config()
RETURNS TABLE (settings jsonb, version bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT c.settings, c.version FROM public.runtime_config AS c WHERE c.id = 1
$$;

CREATE OR REPLACE FUNCTION switchboard_put_runtime_config(p_settings jsonb)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    INSERT INTO public.runtime_config AS c (id, settings, version)
    VALUES (1, p_settings, 1)
    ON CONFLICT (id) DO UPDATE
        SET settings = EXCLUDED.settings, version = c.version + 1, updated_at = now()
    RETURNING version
$$;

REVOKE ALL ON FUNCTION switchboard_runtime_config(), switchboard_put_runtime_config(jsonb)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchboard_runtime_config(), switchboard_put_runtime_config(jsonb)
    TO switchboard_app;
