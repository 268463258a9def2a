"""Webhook tools: the runtime calls the business's URL, signed per Standard Webhooks.

A tool declared with ``url:`` is sent ``spec.method`` (POST by default) to
``spec.url`` through :class:`~.guarded_http.GuardedHttp` under the SSRF rules
and the tenant's allowlist, with the body of :func:`.tool_http.request_body`
and these headers (the tool's own ``headers`` first; these win):

- ``content-type: application/json``;
- ``webhook-id``: ``msg_`` and 32 hex digits derived from the session id and
  the tool call id (:func:`.tool_http.delivery_id`): unique per tool call
  across calls, the same on a retry of it; also sent as ``Idempotency-Key``;
- ``webhook-timestamp``: seconds since the Unix epoch;
- ``webhook-signature``: ``v1,`` and base64 HMAC-SHA256 of
  ``{id}.{timestamp}.{body}`` keyed by the tenant's secret, made by the
  ``standardwebhooks`` package (Standard Webhooks specification, "Signature
  scheme"); the receiver checks it with ``Webhook(secret).verify(body, headers)``.

The answer is read as :mod:`.tool_http` says (deadline ``spec.timeout_ms``).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import final

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

from switchboard.orchestrator.agents import ToolSpec

from .address_policy import AddressPolicy, AllowlistError
from .guarded_http import GuardedHttp
from .invocation import TenantToolSettings, ToolInvocation, ToolOutcome
from .tool_http import call_endpoint, delivery_id, not_configured, request_body, tool_headers

__all__ = ["WebhookRunner", "signed_headers"]


def signed_headers(
    signer: Webhook, msg_id: str, timestamp: datetime, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (``webhook-id``,
    ``webhook-timestamp`` in Unix seconds, ``webhook-signature`` ``v1,<base64>``),
    signed by ``signer`` (``standardwebhooks.Webhook(secret)``, which raises on a
    malformed secret). Post-call webhooks (``orchestrator/post_call.py``) use it too."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signer.sign(msg_id, timestamp, body),
    }


@final
class WebhookRunner:
    """Runs one webhook tool for one tenant (a :class:`~.invocation.ToolRunner`).

    Args:
        spec: the tool (``spec.url`` set).
        settings: the tenant's secret and allowlist.
        http: the guarded client.
        now: the wall clock for ``webhook-timestamp`` (a test may fix it).
    """

    def __init__(
        self,
        spec: ToolSpec,
        settings: TenantToolSettings,
        http: GuardedHttp,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if spec.url is None:
            raise ValueError(f"tool {spec.name!r} is not a webhook (no url)")
        self._spec = spec
        self._url = spec.url
        self._settings = settings
        self._http = http
        self._now = now

    async def __call__(self, invocation: ToolInvocation) -> ToolOutcome:
        """POST (or ``spec.method``) the tool call; the outcome says how it went."""
        try:
            signer = Webhook(self._settings.webhook_secret)
            policy = AddressPolicy.for_tenant(self._settings.allowlist)
        except (binascii.Error, ValueError, EmptyWebhookSecretError, AllowlistError) as exc:
            return not_configured(
                self._spec.name, f"the tenant's tool settings are unusable: {exc}"
            )
        body = request_body(invocation)
        msg_id = delivery_id(invocation)
        own = {**signed_headers(signer, msg_id, self._now(), body), "idempotency-key": msg_id}
        return await call_endpoint(
            self._http,
            invocation,
            method=self._spec.method,
            url=self._url,
            headers=tool_headers(self._spec.headers, own),
            body=body,
            policy=policy,
            timeout_ms=self._spec.timeout_ms,
        )
