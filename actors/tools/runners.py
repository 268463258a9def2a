"""Which runner carries out a tool that leaves the executor: by the tool's kind."""

from __future__ import annotations

from switchboard.orchestrator.agents import ToolSpec

from ..context import EventSink
from .invocation import ToolOutcome, ToolRunner
from .kit import ToolKit


def runner_for(spec: ToolSpec, kit: ToolKit, events: EventSink) -> ToolRunner | ToolOutcome:
    """The runner of ``spec`` (a webhook, an edge function or a Python tool), or the
    ``not_configured`` outcome saying what the server lacks to run it."""
    del events
    if spec.kind == "webhook" and (kit.web is None or kit.tenant is None):
        return _not_configured(spec, "webhooks are not set up on this server")
    if spec.kind == "function" and (kit.functions_base_url is None or kit.tenant is None):
        return _not_configured(spec, "FUNCTIONS_BASE_URL is not set")
    return _not_configured(spec, f"{spec.kind} tools are not available yet")


def _not_configured(spec: ToolSpec, why: str) -> ToolOutcome:
    return ToolOutcome.failed(
        "not_configured",
        f"{spec.name} cannot run here: {why}. Tell the caller you cannot do it now.",
    )
