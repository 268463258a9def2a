"""Each tenant's settings for webhook and edge-function tools (migration 0007).

- The webhook signing secret (Standard Webhooks: ``whsec_`` and base64 of
  random bytes, https://www.standardwebhooks.com/): made on first use, so every
  tenant has one; shown and rotated by ``switchboard tenant webhook-secret``.
  The tenant's receiving server verifies with it; the edge functions' HS256
  tokens are keyed by its decoded bytes.
- The allowlist: internal destinations (CIDR or address, optional ``:port``)
  its webhooks may reach although the SSRF rules refuse private addresses.

Synchronous and blocking like :class:`~.store.Store` (run with
``trio.to_thread.run_sync``). Errors: :class:`~.errors.StorageError` from the
database layer.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from typing import Final
from uuid import UUID

from ..actors.tools.invocation import TenantToolSettings
from .db import Database

__all__ = [
    "new_webhook_secret",
    "rotate_webhook_secret",
    "set_tool_allowlist",
    "tool_settings",
]

SECRET_BYTES: Final = 32


def new_webhook_secret() -> str:
    """A fresh signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def tool_settings(db: Database, tenant_id: UUID) -> TenantToolSettings:
    """The tenant's settings; its secret is made now if it has none yet."""
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "INSERT INTO tenant_tool_settings (tenant_id, webhook_secret) VALUES (%s, %s)"
            " ON CONFLICT (tenant_id) DO NOTHING",
            (tenant_id, new_webhook_secret()),
        )
        cur.execute(
            "SELECT webhook_secret, tool_allowlist FROM tenant_tool_settings WHERE tenant_id = %s",
            (tenant_id,),
        )
        row = cur.fetchone()
    assert row is not None, "inserted above"
    return TenantToolSettings(tenant_id, str(row[0]), tuple(row[1] or ()))


def rotate_webhook_secret(db: Database, tenant_id: UUID) -> str:
    """Replace the tenant's signing secret; returns the new one (the old stops at once)."""
    secret = new_webhook_secret()
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "INSERT INTO tenant_tool_settings (tenant_id, webhook_secret) VALUES (%s, %s)"
            " ON CONFLICT (tenant_id) DO UPDATE"
            " SET webhook_secret = EXCLUDED.webhook_secret, updated_at = now()",
            (tenant_id, secret),
        )
    return secret


def set_tool_allowlist(db: Database, tenant_id: UUID, entries: Sequence[str]) -> None:
    """Make ``entries`` (already checked) the tenant's whole allowlist."""
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "INSERT INTO tenant_tool_settings (tenant_id, webhook_secret, tool_allowlist)"
            " VALUES (%s, %s, %s) ON CONFLICT (tenant_id) DO UPDATE"
            " SET tool_allowlist = EXCLUDED.tool_allowlist, updated_at = now()",
            (tenant_id, new_webhook_secret(), list(entries)),
        )
