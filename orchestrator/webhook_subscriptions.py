"""A tenant's webhook subscriptions: where its ``call.ended`` / ``call.analyzed`` events go.

Each subscription has its own signing secret (Standard Webhooks: ``whsec_`` and
the base64 of 32 random bytes, https://www.standardwebhooks.com/), made when it
is added and shown once; the receiver verifies each delivery with it, e.g.
``standardwebhooks.Webhook(secret).verify(body, headers)``.

Synchronous and blocking like :class:`~.store.Store`. Errors:
:class:`~.errors.StorageError` from the database layer, :class:`~.errors.ConfigError`
for a URL or event type that is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import final
from uuid import UUID

from .db import Database
from .errors import ConfigError
from .outbox_store import EVENT_TYPES
from .tenant_tools import new_webhook_secret

__all__ = ["Subscription", "add_subscription", "list_subscriptions", "remove_subscription"]


@final
@dataclass(frozen=True)
class Subscription:
    """A subscription as listed (its secret is not: it is shown once, when added)."""

    id: UUID
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    created_at: datetime


def _check(url: str, event_types: Sequence[str]) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"the webhook URL must start with http:// or https://, got {url!r}")
    unknown = [e for e in event_types if e not in EVENT_TYPES]
    if unknown or not event_types:
        raise ConfigError(f"events must be among {', '.join(EVENT_TYPES)}, got {list(event_types)}")


def add_subscription(
    db: Database, tenant_id: UUID, url: str, event_types: Sequence[str] = EVENT_TYPES
) -> tuple[UUID, str]:
    """Subscribe ``url`` to ``event_types``; returns its id and its new secret."""
    _check(url, event_types)
    secret = new_webhook_secret()
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "INSERT INTO webhook_subscriptions (tenant_id, url, event_types, secret)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (tenant_id, url, list(dict.fromkeys(event_types)), secret),
        )
        row = cur.fetchone()
    assert row is not None, "INSERT ... RETURNING"
    return row[0], secret


def list_subscriptions(db: Database, tenant_id: UUID) -> list[Subscription]:
    """The tenant's subscriptions, oldest first."""
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "SELECT id, url, event_types, enabled, created_at FROM webhook_subscriptions"
            " WHERE tenant_id = %s ORDER BY created_at, id",
            (tenant_id,),
        )
        return [Subscription(i, u, tuple(e), en, c) for i, u, e, en, c in cur.fetchall()]


def remove_subscription(db: Database, tenant_id: UUID, subscription_id: UUID) -> bool:
    """Delete the subscription and its outbox rows; False if the tenant has none by that id."""
    with db.tenant(tenant_id) as cur:
        cur.execute("DELETE FROM webhook_subscriptions WHERE id = %s", (subscription_id,))
        return cur.rowcount == 1
