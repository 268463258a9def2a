"""Session tokens: the issue's matrix of bad tokens, and secret rotation."""

from __future__ import annotations

import base64
import json
import uuid

import jwt
import pytest

from switchboard.orchestrator.errors import ConfigError
from switchboard.orchestrator.tokens import Keyring, TokenRejectedError, mint, verify

A = Keyring.parse("a=" + "A" * 40)
B_SIGNS_A_VERIFIES = Keyring.parse("b=" + "B" * 40 + ",a=" + "A" * 40)
B_ONLY = Keyring.parse("b=" + "B" * 40)
NOW = 1_800_000_000.0
TENANT = uuid.uuid4()


def token(keyring: Keyring = A, **kw: object) -> str:
    args: dict[str, object] = dict(
        session_id=uuid.uuid4(),
        tenant_id=TENANT,
        agent_id=uuid.uuid4(),
        mode="local",
        now=NOW,
    )
    args.update(kw)
    return mint(keyring, **args)[0]  # type: ignore[arg-type]


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def forged(header: dict[str, object], claims: dict[str, object], signature: str = "") -> str:
    return f"{b64(header)}.{b64(claims)}.{signature}"


def claims_of(tok: str) -> dict[str, object]:
    return jwt.decode(tok, options={"verify_signature": False})


def test_a_valid_token_carries_every_claim() -> None:
    session, agent = uuid.uuid4(), uuid.uuid4()
    tok, minted = mint(
        A,
        session_id=session,
        tenant_id=TENANT,
        agent_id=agent,
        mode="local",
        test_mode=True,
        conversation_id="conv-1",
        now=NOW,
    )
    assert jwt.get_unverified_header(tok) == {"alg": "HS256", "kid": "a", "typ": "JWT"}
    claims = verify(A, tok, now=NOW + 10)
    assert claims == minted
    assert (claims.session_id, claims.agent_id, claims.tenant_id) == (session, agent, TENANT)
    assert claims.expires_at - claims.issued_at == 300 and claims.test_mode
    assert set(claims_of(tok)) == {
        "iss",
        "sub",
        "agent_id",
        "tenant_id",
        "conversation_id",
        "mode",
        "test_mode",
        "mode_source",
        "exp",
        "iat",
        "jti",
    }
    assert claims.mode_source == "session"


def rejected(
    tok: str, keyring: Keyring = A, *, now: float = NOW + 1, **kw: object
) -> TokenRejectedError:
    with pytest.raises(TokenRejectedError) as caught:
        verify(keyring, tok, now=now, **kw)  # type: ignore[arg-type]
    return caught.value


def test_bad_signature() -> None:
    head, body, sig = token().split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    assert rejected(f"{head}.{body}.{flipped}").reason == "bad signature"
    other = Keyring.parse("a=" + "Z" * 40)  # same kid, another secret
    assert rejected(token(other)).reason == "bad signature"


def test_alg_none_is_refused() -> None:
    claims = claims_of(token())
    assert rejected(forged({"alg": "none", "kid": "a"}, claims)).reason == "algorithm must be HS256"


def test_rs_hs_confusion_is_refused() -> None:
    claims = claims_of(token())
    assert (
        rejected(forged({"alg": "RS256", "kid": "a"}, claims, "c2ln")).reason
        == "algorithm must be HS256"
    )
    assert (
        rejected(forged({"alg": "HS512", "kid": "a"}, claims, "c2ln")).reason
        == "algorithm must be HS256"
    )


def test_wrong_issuer() -> None:
    assert rejected(token(issuer="someone-else")).reason == "wrong issuer"


def test_expired_with_at_most_5_seconds_of_leeway() -> None:
    tok = token()
    verify(A, tok, now=NOW + 300 + 4)
    assert rejected(tok, now=NOW + 300 + 5).reason == "token expired"


def test_a_token_without_exp_is_refused() -> None:
    claims = claims_of(token())
    del claims["exp"]
    tok = jwt.encode(claims, A.secrets["a"], algorithm="HS256", headers={"kid": "a"})
    assert rejected(tok).reason == "missing claim exp"


def test_iat_in_the_future_is_refused() -> None:
    assert rejected(token(now=NOW + 60), now=NOW).reason == "token issued in the future"


def test_a_tenant_not_served_here_is_forbidden() -> None:
    error = rejected(token(), serves_tenant=lambda t: t != TENANT)
    assert (error.reason, error.status) == ("tenant not served here", 403)


def test_unknown_kid() -> None:
    assert rejected(token(Keyring.parse("zz=" + "A" * 40))).reason == "unknown signing key (kid)"
    claims = claims_of(token())
    assert rejected(forged({"alg": "HS256"}, claims, "c2ln")).reason == "unknown signing key (kid)"


def test_garbage_is_malformed() -> None:
    assert rejected("not.a.jwt!").reason == "malformed token"
    assert rejected("").reason == "malformed token"


def test_rotation_a_then_b_signs_a_verifies_then_b_only() -> None:
    from_a = token(A)
    assert verify(B_SIGNS_A_VERIFIES, from_a, now=NOW + 1)  # in flight during rotation: fine
    from_b = token(B_SIGNS_A_VERIFIES)
    assert jwt.get_unverified_header(from_b)["kid"] == "b"
    assert verify(B_ONLY, from_b, now=NOW + 1)
    assert rejected(from_a, B_ONLY).reason == "unknown signing key (kid)"  # A retired


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "empty"),
        ("a=" + "x" * 40 + ",b=" + "y" * 40 + ",c=" + "z" * 40, "at most two"),
        ("a", "kid=secret"),
        ("a=short", "shorter than 32"),
        ("a=" + "x" * 40 + ",a=" + "y" * 40, "repeats"),
    ],
)
def test_bad_keyrings_are_configuration_errors(value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Keyring.parse(value)
