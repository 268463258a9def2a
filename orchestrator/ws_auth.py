"""Checking a session token at a WebSocket handshake, before ``accept``.

A client may carry its token in any one of three places (issue 6):

- ``Sec-WebSocket-Protocol``: the client offers ``switchboard.v1`` and the
  token (browsers cannot set headers on a WebSocket); the server answers
  ``switchboard.v1``, never the token;
- ``Authorization: Bearer <token>``;
- the query, ``?token=<token>`` (never logged: the access log is off and
  only the carrier's name is ever logged).

:func:`check_handshake` runs every check before anything is opened for the
call: the token itself (:func:`switchboard.orchestrator.tokens.verify`:
``kid``, HS256 only, signature, ``iss``, ``exp`` with 5 s of leeway, ``iat``),
then, in PostgreSQL and atomically, that the tenant exists here, that the
session is the tenant's and the agent's, and that the ``jti`` was never used
(:meth:`Store.consume_token`; only this last step writes, and only on
success). It answers :class:`Admitted` or :class:`Rejected` (an HTTP status,
401 or 403, and a short reason; 503 when the database cannot answer), and
logs one ``auth.rejected`` line per refusal of a credential (a 503 is the
door's to log: the credential was not judged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Final, Literal

import structlog
import trio

from .errors import StorageError
from .store import Store
from .tokens import Keyring, SessionClaims, TokenRejectedError, verify

log = structlog.get_logger("switchboard.auth")

SUBPROTOCOL: Final = "switchboard.v1"
Carrier = Literal["subprotocol", "authorization", "query"]

_CONSUME_REFUSALS: Final = {
    "unknown_tenant": (403, "tenant not served here"),
    "unknown_session": (403, "no such session for this tenant and agent"),
    "reused": (401, "token already used"),
}


@dataclass(frozen=True)
class Admitted:
    """The token is good and now spent; ``subprotocol`` is what to answer at ``accept``."""

    claims: SessionClaims
    carrier: Carrier
    subprotocol: str | None


@dataclass(frozen=True)
class Rejected:
    """Refuse the handshake with HTTP ``status`` and ``reason`` (short, safe to show)."""

    status: int
    reason: str
    carrier: Carrier | None = None
    cause: str | None = None
    """For a 503: why the database could not answer (for the log, never the client)."""


def offered_subprotocols(headers: Mapping[str, str]) -> list[str]:
    """The ``Sec-WebSocket-Protocol`` values a client offered (RFC 6455 section 4.1)."""
    value = headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in value.split(",") if p.strip()]


def find_tokens(
    headers: Mapping[str, str], query: Mapping[str, Sequence[str]]
) -> list[tuple[Carrier, str]]:
    """Every token the handshake carries, with its carrier (pure; headers lower-cased)."""
    found: list[tuple[Carrier, str]] = []
    for offered in offered_subprotocols(headers):
        if offered != SUBPROTOCOL:
            found.append(("subprotocol", offered))
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(("authorization", value.strip()))
    for value in query.get("token", ()):
        if value:
            found.append(("query", value))
    return found


def peek_claims(
    headers: Mapping[str, str],
    query: Mapping[str, Sequence[str]],
    *,
    keyring: Keyring,
    issuer: str,
) -> SessionClaims | None:
    """The claims of the one token the handshake carries, if it verifies; else None.

    Pure (no database, no log, nothing spent): admission control reads the
    call's ``mode`` with it before :func:`check_handshake` spends the token.
    """
    tokens = {token for _, token in find_tokens(headers, query)}
    if len(tokens) != 1:
        return None
    try:
        return verify(keyring, tokens.pop(), issuer=issuer)
    except TokenRejectedError:
        return None


async def check_handshake(
    headers: Mapping[str, str],
    query: Mapping[str, Sequence[str]],
    *,
    keyring: Keyring,
    issuer: str,
    store: Store,
    door: str,
    session_id: str | None = None,
    now: float | None = None,
) -> Admitted | Rejected:
    """Check the token a WebSocket handshake carries; spend it if it is good.

    Args:
        headers: the handshake's headers, names lower-cased.
        query: the URL's query, as ``urllib.parse.parse_qs`` gives it.
        keyring, issuer: what :func:`~switchboard.orchestrator.tokens.verify` checks against.
        door: the endpoint's name, for the log.
        session_id: the session the URL names (``/app/voice/stream/{session_id}``), if any:
            the token must be that session's.
        now: the time (Unix seconds) to check ``exp`` and ``iat`` against (tests).

    Never raises for a bad token; a database failure is ``Rejected(503, ...)``.
    """
    tokens = find_tokens(headers, query)
    carrier: Carrier | None = tokens[0][0] if tokens else None
    result = await _check(tokens, keyring, issuer, store, session_id, now)
    if isinstance(result, Rejected):
        if result.cause is None:
            log.warning(
                "auth.rejected",
                door=door,
                carrier=carrier,
                status=result.status,
                reason=result.reason,
            )
        return Rejected(result.status, result.reason, carrier, result.cause)
    if SUBPROTOCOL not in offered_subprotocols(headers):
        return result
    return Admitted(result.claims, result.carrier, SUBPROTOCOL)


async def _check(
    tokens: list[tuple[Carrier, str]],
    keyring: Keyring,
    issuer: str,
    store: Store,
    session_id: str | None,
    now: float | None,
) -> Admitted | Rejected:
    if not tokens:
        return Rejected(401, "a session token is required")
    if len({token for _, token in tokens}) > 1:
        return Rejected(401, "more than one token offered")
    carrier, token = tokens[0]
    try:
        claims = verify(keyring, token, issuer=issuer, now=now)
    except TokenRejectedError as exc:
        return Rejected(exc.status, exc.reason, carrier)
    if session_id is not None and session_id != str(claims.session_id):
        return Rejected(403, "the token is for another session", carrier)
    try:
        outcome = await trio.to_thread.run_sync(
            partial(
                store.consume_token,
                claims.jti,
                tenant_id=claims.tenant_id,
                session_id=claims.session_id,
                agent_id=claims.agent_id,
                expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
            )
        )
    except StorageError as exc:
        cause = str(exc) or type(exc).__name__
        return Rejected(503, "cannot check the token now; try again", carrier, cause)
    if outcome != "ok":
        status, reason = _CONSUME_REFUSALS[outcome]
        return Rejected(status, reason, carrier)
    return Admitted(claims, carrier, None)
