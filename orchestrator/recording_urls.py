"""Signed playback URLs: who may play which recording's track, until when.

A playback URL is ``{base}/v1/calls/{session_id}/recording/{track}.wav?token={jwt}``.
The token is an HS256 JWT (RFC 7519, signed per RFC 7515) made with the same
keyring as the session tokens (:mod:`.tokens`: ``VOICE_RUNTIME_SIGNING_SECRETS``,
the first secret signs, all verify, ``kid`` in the header), told apart by its
audience: ``aud`` is :data:`AUDIENCE`, which a session token never has (and a
session token has no ``aud``, which a playback token must), so neither can
stand in for the other. Claims: ``iss``, ``aud``, ``sub`` (the session id),
``tenant_id``, ``rid`` (the recording row's ``recording_id``: a URL made
before a delete never plays a recording made later), ``track`` (``caller``,
``agent`` or ``both``), ``iat`` and ``exp``.

Lifetime: :data:`DEFAULT_TTL_S` (15 minutes) unless the request asks for
between 1 s and :data:`MAX_TTL_S` (24 hours). In development mode the keyring
is made at start, so URLs do not outlive the server.

:func:`verify_playback` checks everything the token alone can say (algorithm,
``kid``, signature, issuer, audience, expiry with no leeway, that the URL's
session and track are the token's); the route then checks the row (the
tenant's, the same ``recording_id``, playable) before it reads anything.
Every refusal is a :class:`PlaybackRefused` with a short reason.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Final, final
from urllib.parse import quote

from .signed_links import LinkRefused, check_expiry, decode_link
from .tokens import DEFAULT_ISSUER, Keyring

__all__ = [
    "AUDIENCE",
    "DEFAULT_TTL_S",
    "MAX_TTL_S",
    "TRACKS",
    "PlaybackClaims",
    "PlaybackRefused",
    "playback_path",
    "sign_playback",
    "verify_playback",
]

AUDIENCE: Final = "switchboard:recording"
TRACKS: Final = ("caller", "agent", "both")
DEFAULT_TTL_S: Final = 15 * 60
MAX_TTL_S: Final = 24 * 60 * 60


PlaybackRefused = LinkRefused
"""A playback token was refused (:class:`~.signed_links.LinkRefused`)."""


@final
@dataclass(frozen=True, slots=True)
class PlaybackClaims:
    """What a valid playback token grants: one track of one recording, until ``expires_at``
    (Unix seconds)."""

    tenant_id: uuid.UUID
    session_id: uuid.UUID
    recording_id: uuid.UUID
    track: str
    expires_at: int


def playback_path(session_id: uuid.UUID, track: str, token: str) -> str:
    """The URL's path and query (append it to the server's public base URL)."""
    return f"/v1/calls/{session_id}/recording/{track}.wav?token={quote(token, safe='')}"


def sign_playback(
    keyring: Keyring,
    *,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    recording_id: uuid.UUID,
    track: str,
    ttl_s: int = DEFAULT_TTL_S,
    issuer: str = DEFAULT_ISSUER,
    now: float | None = None,
) -> tuple[str, PlaybackClaims]:
    """A token granting ``track`` of the recording for ``ttl_s`` seconds.

    Raises:
        ValueError: ``track`` is not one of :data:`TRACKS`, or ``ttl_s`` is not
            within 1 .. :data:`MAX_TTL_S`.
    """
    if track not in TRACKS:
        raise ValueError(f"track must be one of {', '.join(TRACKS)}, got {track!r}")
    if isinstance(ttl_s, bool) or not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be 1 to {MAX_TTL_S} seconds, got {ttl_s!r}")
    iat = int(now if now is not None else time.time())
    claims = PlaybackClaims(tenant_id, session_id, recording_id, track, iat + ttl_s)
    payload = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": str(session_id),
        "tenant_id": str(tenant_id),
        "rid": str(recording_id),
        "track": track,
        "iat": iat,
        "exp": claims.expires_at,
    }
    return keyring.sign(payload), claims


def verify_playback(
    keyring: Keyring,
    token: str,
    *,
    session_id: str,
    track: str,
    issuer: str = DEFAULT_ISSUER,
    now: float | None = None,
) -> PlaybackClaims:
    """Check a playback token presented at the URL of ``session_id``'s ``track``.

    Raises:
        PlaybackRefused: malformed, another algorithm, unknown ``kid``, a bad
            signature, another issuer or audience, a missing claim, expired, or
            made for another session or track.
    """
    claims = decode_link(
        keyring,
        token,
        audience=AUDIENCE,
        issuer=issuer,
        required=("iss", "aud", "sub", "tenant_id", "rid", "track", "iat", "exp"),
        kind="playback token",
    )
    try:
        result = PlaybackClaims(
            uuid.UUID(str(claims["tenant_id"])),
            uuid.UUID(str(claims["sub"])),
            uuid.UUID(str(claims["rid"])),
            str(claims["track"]),
            int(claims["exp"]),
        )
    except (TypeError, ValueError):
        raise PlaybackRefused("malformed claims") from None
    check_expiry(result.expires_at, now, "the URL")
    if session_id != str(result.session_id):
        raise PlaybackRefused("the URL was made for another call")
    if track != result.track:
        raise PlaybackRefused("the URL was made for another track")
    return result
