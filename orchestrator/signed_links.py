"""What the server's signed links share: decoding and checking their JWT.

A signed link (a recording's playback URL, :mod:`.recording_urls`; a call's
timeline link, :mod:`.timeline_urls`) carries an HS256 JWT (RFC 7519) made with
the session tokens' keyring (:mod:`.tokens`), told apart by its audience. This
module decodes one for a given audience and its required claims, and turns
every way it can be wrong into a :class:`LinkRefused` (``PlaybackRefused`` in
:mod:`.recording_urls`) with a short reason that is safe to show.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jwt

from .errors import AuthError
from .tokens import ALGORITHM, Keyring, TokenRejectedError

__all__ = ["LinkRefused", "check_expiry", "decode_link"]


class LinkRefused(AuthError):  # noqa: N818 - what happened to the request, as trio names
    """A signed link's token was refused; ``reason`` is short and safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_link(
    keyring: Keyring,
    token: str,
    *,
    audience: str,
    issuer: str,
    required: Sequence[str],
    kind: str,
) -> dict[str, Any]:
    """The claims of ``token``, a link of ``kind`` (``"playback token"``, ``"timeline
    link"``) for ``audience``; its expiry is the caller's to check (:func:`check_expiry`),
    so tests can fix the time.

    Raises:
        LinkRefused: malformed, another algorithm, an unknown ``kid``, a bad signature,
            another issuer or audience (a session token has none), a missing claim.
    """
    try:
        secret = keyring.secret_for(token)
    except TokenRejectedError as exc:
        raise LinkRefused(exc.reason) from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": list(required), "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise LinkRefused("bad signature") from None
    except jwt.InvalidAudienceError:
        raise LinkRefused(f"not a {kind}") from None
    except jwt.InvalidIssuerError:
        raise LinkRefused("wrong issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim == "aud":  # a session token
            raise LinkRefused(f"not a {kind}") from None
        raise LinkRefused(f"missing claim {exc.claim}") from None
    except jwt.PyJWTError:
        raise LinkRefused("invalid token") from None
    return claims


def check_expiry(expires_at: int, now: float | None, what: str) -> None:
    """Refuse ``what`` (``"the URL"``, ``"the link"``) at or after ``expires_at`` (no leeway).

    Raises:
        LinkRefused: it has expired.
    """
    if expires_at <= (now if now is not None else time.time()):
        raise LinkRefused(f"{what} has expired")
