"""Signed timeline links: who may read one call's timeline page, until when.

A link is ``{base}/v1/calls/{session_id}/timeline?token={jwt}``: an HS256 JWT (RFC 7519)
made with the server keyring (:mod:`.tokens`, ``kid`` in the header), like the
recording playback URLs (:mod:`.recording_urls`) but with its own audience,
:data:`AUDIENCE`, so neither a playback URL's token nor a session token opens a
timeline, nor a timeline token a recording. Claims: ``iss``, ``aud``, ``sub`` (the
session id), ``tenant_id``, ``iat``, ``exp``. Lifetime :data:`DEFAULT_TTL_S` (1 h)
unless asked for 1 s to :data:`MAX_TTL_S` (24 h). Every refusal is a
:class:`~.signed_links.LinkRefused` with a short reason.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Final, final
from urllib.parse import quote

from .signed_links import LinkRefused, check_expiry, decode_link
from .tokens import DEFAULT_ISSUER, Keyring

__all__ = ["AUDIENCE", "DEFAULT_TTL_S", "MAX_TTL_S", "TimelineClaims", "sign_timeline",
           "timeline_path", "verify_timeline"]  # fmt: skip

AUDIENCE: Final = "switchboard:timeline"
DEFAULT_TTL_S: Final = 60 * 60
MAX_TTL_S: Final = 24 * 60 * 60


@final
@dataclass(frozen=True, slots=True)
class TimelineClaims:
    """What a valid timeline token grants: one call's timeline until ``expires_at`` (Unix s)."""

    tenant_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: int


def timeline_path(session_id: uuid.UUID, token: str) -> str:
    """The link's path and query (append it to the server's public base URL)."""
    return f"/v1/calls/{session_id}/timeline?token={quote(token, safe='')}"


def sign_timeline(
    keyring: Keyring,
    *,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    ttl_s: int = DEFAULT_TTL_S,
    issuer: str = DEFAULT_ISSUER,
    now: float | None = None,
) -> tuple[str, TimelineClaims]:
    """A token granting the timeline of ``session_id`` for ``ttl_s`` seconds.

    Raises:
        ValueError: ``ttl_s`` is not within 1 .. :data:`MAX_TTL_S`.
    """
    if isinstance(ttl_s, bool) or not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be 1 to {MAX_TTL_S} seconds, got {ttl_s!r}")
    iat = int(now if now is not None else time.time())
    claims = TimelineClaims(tenant_id, session_id, iat + ttl_s)
    payload = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": str(session_id),
        "tenant_id": str(tenant_id),
        "iat": iat,
        "exp": claims.expires_at,
    }
    return keyring.sign(payload), claims


def verify_timeline(
    keyring: Keyring,
    token: str,
    *,
    session_id: str,
    issuer: str = DEFAULT_ISSUER,
    now: float | None = None,
) -> TimelineClaims:
    """Check a timeline token presented at the timeline of ``session_id``.

    Raises:
        LinkRefused: malformed, another algorithm, unknown ``kid``, a bad signature,
            another issuer or audience, a missing claim, expired (no leeway), or made
            for another call.
    """
    claims = decode_link(
        keyring,
        token,
        audience=AUDIENCE,
        issuer=issuer,
        required=("iss", "aud", "sub", "tenant_id", "iat", "exp"),
        kind="timeline link",
    )
    try:
        result = TimelineClaims(
            uuid.UUID(str(claims["tenant_id"])), uuid.UUID(str(claims["sub"])), int(claims["exp"])
        )
    except (TypeError, ValueError):
        raise LinkRefused("malformed claims") from None
    check_expiry(result.expires_at, now, "the link")
    if session_id != str(result.session_id):
        raise LinkRefused("the link was made for another call")
    return result
