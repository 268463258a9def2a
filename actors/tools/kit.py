"""What a call's tool executor is given besides the call: credentials, clients, settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from .invocation import KnowledgeSearch, TenantToolSettings, ToolRunner


@dataclass(frozen=True)
class TwilioRest:
    """Credentials for Twilio's REST API; ``api_base`` is overridable for tests."""

    account_sid: str
    auth_token: str
    api_base: str = "https://api.twilio.com"


@dataclass(frozen=True)
class ToolKit:
    """Everything the executor needs beyond the call itself; every part optional.

    Attributes:
        twilio: Twilio REST credentials (transfers); None: transfers are refused.
        http: the client for Twilio's REST API; None: one per request.
        web: the guarded client for webhooks and edge functions; None: those
            tools fail with ``not_configured``.
        tenant: the call's tenant signing secret and allowlist; None: webhooks
            and edge functions fail with ``not_configured``.
        functions_base_url: ``FUNCTIONS_BASE_URL`` for the call's tenant
            (``{tenant}`` already replaced); None: edge functions fail with
            ``not_configured``.
        knowledge: the knowledge index (``search_knowledge``); None: the tool
            fails with ``not_configured``.
        runners: runners by tool name that take the place of the agent's own
            (a replay's recorded tools; tests).
    """

    twilio: TwilioRest | None = None
    http: httpx.AsyncClient | None = None
    web: Any = None  # GuardedHttp | None (typed once .guarded_http lands)
    tenant: TenantToolSettings | None = None
    functions_base_url: str | None = None
    knowledge: KnowledgeSearch | None = None
    runners: Mapping[str, ToolRunner] = field(default_factory=dict)
