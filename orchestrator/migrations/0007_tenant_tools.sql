-- Version 7: each tenant's settings for the tools that leave the runtime
-- (issue 14): the Standard Webhooks signing secret its webhook tools are signed
-- with (and its edge-function tokens keyed by), and the allowlist of internal
-- destinations its webhooks may reach despite the SSRF rules.
--
-- webhook_secret: "whsec_" and the base64 of 24 to 64 random bytes (the
-- Standard Webhooks format); made on first use, rotated by
-- `switchboard tenant webhook-secret NAME --rotate`.
-- tool_allowlist: entries as `switchboard tenant allow` checked them: a CIDR
-- network or an address, optionally with ":port" (IPv6 in brackets).
--
-- Row-level security by tenant_id as for every other table.

CREATE TABLE tenant_tool_settings (
    tenant_id       uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    webhook_secret  text NOT NULL CHECK (webhook_secret ~ '^whsec_[A-Za-z0-9+/]{32,88}={0,2}$'),
    tool_allowlist  text[] NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE tenant_tool_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_tool_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_tool_settings
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

REVOKE ALL ON tenant_tool_settings FROM switchboard_app;
GRANT SELECT, INSERT, UPDATE ON tenant_tool_settings TO switchboard_app;
