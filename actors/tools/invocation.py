"""What a tool runner is given and what it gives back (shared by every kind of tool)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from uuid import UUID


@dataclass(frozen=True)
class ToolInvocation:
    """One call of a tool by the agent, with the call it belongs to.

    Attributes:
        call_id: the model's tool call id; sent as the idempotency key
            (``webhook-id``), so a retried delivery is recognised.
        name: the tool's name.
        arguments: the model's arguments, already validated against the
            tool's JSON Schema.
        session_id, tenant_id, agent_id: the call's ids.
        tenant: the tenant's name; agent: the agent's name.
        call_sid: Twilio's call SID (phone calls), from_number / to_number: E.164.
    """

    call_id: str
    name: str
    arguments: Mapping[str, Any]
    session_id: UUID
    tenant_id: UUID
    agent_id: UUID
    tenant: str
    agent: str
    call_sid: str | None = None
    from_number: str | None = None
    to_number: str | None = None

    def context_json(self) -> dict[str, Any]:
        """The call context a webhook body carries under ``call`` (JSON data)."""
        return {
            "session_id": str(self.session_id),
            "tenant_id": str(self.tenant_id),
            "tenant": self.tenant,
            "agent_id": str(self.agent_id),
            "agent": self.agent,
            "call_sid": self.call_sid,
            "from": self.from_number,
            "to": self.to_number,
        }


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool run came to.

    Attributes:
        ok: the tool answered; False for every failure and refusal.
        output: what the model is given: the answer (JSON text for webhooks,
            size-capped with a note when truncated) or, on failure, a sentence
            saying what went wrong that the agent can act on.
        error: on failure, its kind: ``invalid_arguments`` (schema), ``refused``
            (SSRF rules, allowlist, a redirect), ``timeout``, ``too_large``,
            ``http_status``, ``invalid_json``, ``network``, ``not_configured``,
            ``unknown_tool``, ``crashed``, ``unavailable`` (a service of the
            runtime's own, such as the knowledge index, failed).
        detail: more for the ``tool:result`` event (JSON data: the HTTP status,
            the address connected to, bytes read, the reason of a refusal).
    """

    ok: bool
    output: str
    error: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, error: str, output: str, **detail: Any) -> ToolOutcome:
        return cls(False, output, error, detail)


MODEL_OUTPUT_BYTES: Final = 4096
"""The most of a tool's answer the model is given (UTF-8 bytes); the rest is cut with a note."""


def for_model(data: bytes, limit: int = MODEL_OUTPUT_BYTES) -> tuple[str, bool]:
    """A tool's answer (UTF-8) as the model's text: whole, or its first ``limit`` bytes
    (never a split character) and a note saying how much there was; and whether it
    was cut."""
    if len(data) <= limit:
        return data.decode("utf-8", "replace"), False
    kept = data[:limit].decode("utf-8", "ignore")
    return f"{kept} [truncated: the answer is {len(data)} bytes; the first {limit} shown]", True


class ToolRunner(Protocol):
    """Runs one kind of tool (a webhook, an edge function, a Python tool)."""

    async def __call__(self, invocation: ToolInvocation) -> ToolOutcome: ...


@dataclass(frozen=True)
class TenantToolSettings:
    """A tenant's settings for the tools that leave the runtime.

    Attributes:
        webhook_secret: the Standard Webhooks signing secret (``whsec_`` and
            base64); its decoded bytes also sign the edge functions' HS256 tokens.
        allowlist: internal destinations a webhook may reach although the SSRF
            rules refuse them: CIDR networks (``10.1.0.0/16``) or single
            addresses, each optionally with ``:port`` (IPv6 in brackets).
    """

    tenant_id: UUID
    webhook_secret: str
    allowlist: tuple[str, ...] = ()


@dataclass(frozen=True)
class Passage:
    """A passage of the agent's knowledge found by a search.

    ``source``: the document it came from; ``score``: PostgreSQL's
    ``ts_rank_cd`` (higher is better, comparable within one search only);
    ``heading``: the heading of its section in the document (``""``: none);
    ``every_word``: it matches every word of the query (False: only some, found
    by a search that ORs the words).
    """

    source: str
    text: str
    score: float
    heading: str = ""
    every_word: bool = True


class KnowledgeSearch(Protocol):
    """Full-text search over an agent's knowledge (the orchestrator's store)."""

    async def search(
        self, tenant_id: UUID, agent_id: UUID, query: str, limit: int
    ) -> Sequence[Passage]:
        """The best ``limit`` passages for ``query``, best first (may be empty).

        Raises:
            OSError or the store's error when the database cannot be reached.
        """
        ...
