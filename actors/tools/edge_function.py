"""Edge-function tools: ``function: NAME`` calls the tenant's workspace function.

The Supabase Edge Functions convention: ``POST {base_url}/{NAME}`` with
``Authorization: Bearer <JWT>``. ``base_url`` is the operator's
``FUNCTIONS_BASE_URL``; ``{tenant}`` in it becomes the tenant's name and
``{tenant_id}`` its id (both URL-quoted), so each workspace can have its own host.

The token (RFC 7519, HS256 per RFC 7518 section 3.2) is keyed by the decoded
bytes of the tenant's Standard Webhooks secret (``whsec_`` stripped, base64
decoded, as ``standardwebhooks`` decodes it; at least 32 bytes, the length
RFC 7518 requires of an HS256 key) and carries::

    iss "switchboard"   aud "edge-functions"   sub = tenant_id = the tenant's id
    session_id          tool_call_id           iat, exp = iat + 60 s

The function checks it with, for example, ``jwt.decode(token, key,
algorithms=["HS256"], audience="edge-functions", issuer="switchboard")``.

The body and the answer are the webhook's (:mod:`.tool_http`), with the same
``webhook-id`` / ``Idempotency-Key``. The base URL is the operator's own
configuration, not a tenant's, so it is NOT held to the SSRF rules (a
functions server on 127.0.0.1 next to the runtime is normal); the deadline
(``spec.timeout_ms``), the byte cap, the single lookup and the ban on
redirects still apply.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Final, final
from urllib.parse import quote

import jwt

from switchboard.orchestrator.agents import ToolSpec

from .address_policy import AddressPolicy
from .guarded_http import GuardedHttp
from .invocation import TenantToolSettings, ToolInvocation, ToolOutcome
from .tool_http import call_endpoint, delivery_id, not_configured, request_body, tool_headers

__all__ = ["TOKEN_LIFETIME_S", "EdgeFunctionRunner", "signing_key", "tenant_token"]

TOKEN_LIFETIME_S: Final = 60
ISSUER: Final = "switchboard"
AUDIENCE: Final = "edge-functions"
MIN_KEY_BYTES: Final = 32


def signing_key(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret (``whsec_`` + base64).

    Raises:
        ValueError: not base64, or shorter than 32 bytes once decoded.
    """
    encoded = secret.removeprefix("whsec_")
    try:  # exactly as standardwebhooks.Webhook does, so both sign with the same key
        key = base64.b64decode(encoded + "==")
    except binascii.Error as exc:
        raise ValueError(f"the tenant's secret is not base64 ({exc})") from exc
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"the tenant's secret is {len(key)} bytes; an HS256 key needs {MIN_KEY_BYTES}"
        )
    return key


def tenant_token(invocation: ToolInvocation, key: bytes, issued_at: int) -> str:
    """The short-lived token for one tool call (claims in the module docstring)."""
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(invocation.tenant_id),
        "tenant_id": str(invocation.tenant_id),
        "session_id": str(invocation.session_id),
        "tool_call_id": invocation.call_id,
        "iat": issued_at,
        "exp": issued_at + TOKEN_LIFETIME_S,
    }
    return jwt.encode(claims, key, algorithm="HS256")


@final
class EdgeFunctionRunner:
    """Runs one edge-function tool for one tenant (a :class:`~.invocation.ToolRunner`).

    Args:
        spec: the tool (``spec.function`` set).
        settings: the tenant's secret.
        http: the guarded client.
        base_url: ``FUNCTIONS_BASE_URL`` (may hold ``{tenant}`` / ``{tenant_id}``).
        now: the wall clock in seconds since the epoch, for ``iat`` (a test may fix it).
    """

    def __init__(
        self,
        spec: ToolSpec,
        settings: TenantToolSettings,
        http: GuardedHttp,
        base_url: str,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        if spec.function is None:
            raise ValueError(f"tool {spec.name!r} is not an edge function (no function)")
        self._spec = spec
        self._function = spec.function
        self._settings = settings
        self._http = http
        self._base_url = base_url
        self._now = now

    def url_for(self, invocation: ToolInvocation) -> str:
        """``{base_url}/{function}`` for the invocation's tenant."""
        base = self._base_url.replace("{tenant}", quote(invocation.tenant, safe="")).replace(
            "{tenant_id}", str(invocation.tenant_id)
        )
        return f"{base.rstrip('/')}/{quote(self._function, safe='')}"

    async def __call__(self, invocation: ToolInvocation) -> ToolOutcome:
        """POST the tool call to the function; the outcome says how it went."""
        try:
            key = signing_key(self._settings.webhook_secret)
        except ValueError as exc:
            return not_configured(self._spec.name, str(exc))
        msg_id = delivery_id(invocation)
        token = tenant_token(invocation, key, int(self._now()))
        own = {
            "authorization": f"Bearer {token}",
            "webhook-id": msg_id,
            "idempotency-key": msg_id,
        }
        return await call_endpoint(
            self._http,
            invocation,
            method="POST",
            url=self.url_for(invocation),
            headers=tool_headers(self._spec.headers, own),
            body=request_body(invocation),
            policy=AddressPolicy.unrestricted(),
            timeout_ms=self._spec.timeout_ms,
        )
