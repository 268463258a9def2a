"""Session tokens: short-lived HS256 JWTs that admit one call.

A token (RFC 7519, signed per RFC 7515 with HMAC-SHA256) carries in its
header the ``kid`` of the secret that signed it, and the claims ``iss``,
``sub`` (the session id), ``agent_id``, ``tenant_id``, ``conversation_id``,
``mode``, ``test_mode``, ``mode_source`` (see :mod:`.call_chain`), ``exp`` (5 minutes
after ``iat``), ``iat`` and ``jti``.

Secrets come from a keyring of at most two active secrets
(``VOICE_RUNTIME_SIGNING_SECRETS="kid1=secret1,kid2=secret2"``): the first
signs, all verify, so a secret is rotated without refusing a call in flight:
(A) -> (B signs, A verifies) -> (B).

:func:`verify` checks, before anything is opened for the call: the ``kid``
is in the keyring, the algorithm is HS256 and nothing else (no ``none``, no
RS/HS confusion), ``iss`` is exact, ``exp`` is present and in the future (at
most 5 s of leeway), ``iat`` is present and not in the future, and
``tenant_id`` is one this deployment serves. Whether the ``jti`` was used
before is the store's to check (atomically, in PostgreSQL). Every refusal is
an :class:`AuthError` with a short ``reason``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import AuthError, ConfigError

ALGORITHM = "HS256"
DEFAULT_ISSUER = "switchboard"
TOKEN_TTL_S = 300
LEEWAY_S = 5
MIN_SECRET_BYTES = 32  # RFC 7518 section 3.2: an HS256 key as long as the hash


class TokenRejectedError(AuthError):
    """A token was refused; ``reason`` is short and safe to show the client."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Keyring:
    """Signing secrets by ``kid``; ``signing_kid`` signs, every entry verifies."""

    secrets: Mapping[str, bytes]
    signing_kid: str

    @classmethod
    def parse(cls, value: str) -> Keyring:
        """Parse ``"kid1=secret1,kid2=secret2"`` (the first signs).

        Raises:
            ConfigError: empty, malformed, more than two secrets, a repeated
                ``kid``, or a secret shorter than 32 bytes.
        """
        entries = [e.strip() for e in value.split(",") if e.strip()]
        if not entries:
            raise ConfigError(
                "VOICE_RUNTIME_SIGNING_SECRETS is empty: expected kid=secret[,kid=secret]"
            )
        if len(entries) > 2:
            raise ConfigError(
                "VOICE_RUNTIME_SIGNING_SECRETS holds at most two secrets (the new one first)"
            )
        keys: dict[str, bytes] = {}
        for entry in entries:
            kid, sep, secret = entry.partition("=")
            kid = kid.strip()
            if not sep or not kid or not secret:
                raise ConfigError(
                    f"VOICE_RUNTIME_SIGNING_SECRETS entry {kid or '?'!r}: expected kid=secret"
                )
            if kid in keys:
                raise ConfigError(f"VOICE_RUNTIME_SIGNING_SECRETS repeats kid {kid!r}")
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"VOICE_RUNTIME_SIGNING_SECRETS secret {kid!r} is shorter than "
                    f"{MIN_SECRET_BYTES} bytes"
                )
            keys[kid] = secret.encode()
        return cls(keys, entries[0].partition("=")[0].strip())

    @classmethod
    def generate(cls, kid: str = "dev") -> Keyring:
        """A keyring with one random secret (development)."""
        return cls({kid: secrets.token_urlsafe(48).encode()}, kid)

    def sign(self, payload: Mapping[str, Any]) -> str:
        """``payload`` as an HS256 JWT signed by the signing secret, its ``kid`` in the header."""
        kid = self.signing_kid
        return jwt.encode(
            dict(payload), self.secrets[kid], algorithm=ALGORITHM, headers={"kid": kid}
        )

    def secret_for(self, token: str) -> bytes:
        """The secret that must have signed ``token``, read from its header before any
        claim is trusted.

        Raises:
            TokenRejectedError: the token is malformed, its algorithm is not HS256 (no
                ``none``, no RS/HS confusion), or its ``kid`` is not in the keyring.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejectedError("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise TokenRejectedError(f"algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self.secrets:
            raise TokenRejectedError("unknown signing key (kid)")
        return self.secrets[kid]


@dataclass(frozen=True)
class SessionClaims:
    session_id: uuid.UUID
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    conversation_id: str | None
    mode: str
    test_mode: bool
    jti: str
    issued_at: int
    expires_at: int
    mode_source: str = "session"
    """Why ``mode`` leads the chain: ``session`` or ``test_mode`` (the session asked;
    honoured at the call), ``config`` or ``agent`` (what applied when the session was
    made; the call decides again, see :mod:`.call_chain`)."""


def mint(
    keyring: Keyring,
    *,
    session_id: uuid.UUID,
    tenant_id: uuid.UUID,
    agent_id: uuid.UUID,
    mode: str,
    test_mode: bool = False,
    mode_source: str = "session",
    conversation_id: str | None = None,
    issuer: str = DEFAULT_ISSUER,
    now: float | None = None,
    ttl_s: int = TOKEN_TTL_S,
) -> tuple[str, SessionClaims]:
    """Sign a session token with the keyring's signing secret."""
    iat = int(now if now is not None else time.time())
    claims = SessionClaims(
        session_id,
        tenant_id,
        agent_id,
        conversation_id,
        mode,
        test_mode,
        jti=uuid.uuid4().hex,
        issued_at=iat,
        expires_at=iat + ttl_s,
        mode_source=mode_source,
    )
    payload = {
        "iss": issuer,
        "sub": str(session_id),
        "agent_id": str(agent_id),
        "tenant_id": str(tenant_id),
        "conversation_id": conversation_id,
        "mode": mode,
        "test_mode": test_mode,
        "mode_source": mode_source,
        "iat": iat,
        "exp": iat + ttl_s,
        "jti": claims.jti,
    }
    return keyring.sign(payload), claims


def verify(
    keyring: Keyring,
    token: str,
    *,
    issuer: str = DEFAULT_ISSUER,
    serves_tenant: Callable[[uuid.UUID], bool] = lambda _: True,
    now: float | None = None,
) -> SessionClaims:
    """Check a session token; return its claims.

    Raises:
        TokenRejectedError: with ``status`` 401 for a token that is malformed,
            unsigned, signed with another algorithm or an unknown ``kid``,
            badly signed, expired, issued in the future or by another issuer,
            or missing a claim; 403 for a tenant this deployment does not serve.
    """
    secret = keyring.secret_for(token)
    at = now if now is not None else time.time()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            leeway=LEEWAY_S,
            options={
                "require": ["exp", "iat", "iss", "sub", "jti", "tenant_id", "agent_id"],
                "verify_exp": False,  # checked below against `at`, so tests can fix the time
                "verify_iat": False,
            },
        )
    except jwt.InvalidIssuerError:
        raise TokenRejectedError("wrong issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejectedError(f"missing claim {exc.claim}") from None
    except jwt.InvalidSignatureError:
        raise TokenRejectedError("bad signature") from None
    except jwt.PyJWTError:
        raise TokenRejectedError("invalid token") from None
    try:
        exp, iat = int(claims["exp"]), int(claims["iat"])
        session_id = uuid.UUID(str(claims["sub"]))
        tenant_id = uuid.UUID(str(claims["tenant_id"]))
        agent_id = uuid.UUID(str(claims["agent_id"]))
    except (TypeError, ValueError):
        raise TokenRejectedError("malformed claims") from None
    if exp + LEEWAY_S <= at:
        raise TokenRejectedError("token expired")
    if iat - LEEWAY_S > at:
        raise TokenRejectedError("token issued in the future")
    if not serves_tenant(tenant_id):
        raise TokenRejectedError("tenant not served here", status=403)
    conversation = claims.get("conversation_id")
    return SessionClaims(
        session_id,
        tenant_id,
        agent_id,
        str(conversation) if conversation is not None else None,
        str(claims.get("mode", "local")),
        bool(claims.get("test_mode", False)),
        str(claims["jti"]),
        iat,
        exp,
        str(claims.get("mode_source", "session")),
    )
