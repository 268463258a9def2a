"""The replay's tool executor: each tool call gets its recorded result, at its recorded delay.

It is the real :class:`~switchboard.actors.tool_executor.ToolExecutor` with
two answers taken from the recording: a tool call the trace holds a result
for returns that result (``ok``, ``output`` and what it deferred: a hang-up or
a transfer) after the same delay; a deferred transfer's redirect returns the
recorded outcome of Twilio's REST API, in order. What the executor decides by
itself (a transfer impossible on a call without a call SID or without
credentials) runs as it did. A tool call the recording lacks (a what-if made
the agent call it) runs live: the builtins answer as they would. So do the
builtins when a what-if changed what they answer from (the agent's hours, its
transfer number: :func:`~.what_if.decisions_changed`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import trio

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.messages import (
    AfterResponse,
    HangUpAfterResponse,
    ToolCallRequested,
    ToolResult,
    ToSupervisor,
    ToTools,
    TransferAfterResponse,
)
from switchboard.actors.tool_executor import ACK_OUTPUT, BUILTIN_TOOLS, ToolExecutor, TwilioRest
from switchboard.actors.tools.kit import ToolKit

from ..agents import AgentSpec
from .recorded_call import RecordedCall
from .what_if import decisions_changed

__all__ = ["ReplayTools", "replay_tools"]

REPLAY_TWILIO = TwilioRest("AC-replay", "replay", api_base="http://twilio.replay.invalid")
"""Stands in for the recorded call's Twilio credentials (never used to connect)."""


def _after(recorded: dict[str, str] | None) -> AfterResponse | None:
    if recorded is None:
        return None
    if "transfer" in recorded:
        return TransferAfterResponse(recorded["transfer"])
    if "hangup" in recorded:
        return HangUpAfterResponse()
    return None


class ReplayTools(ToolExecutor):
    """See the module docstring."""

    def __init__(
        self, call: RecordedCall, ctx: CallContext, *, live_builtins: bool, **kwargs: Any
    ) -> None:
        super().__init__(ctx, **kwargs)
        self._recorded = call.tools
        self._transfers = list(call.transfers)
        self._live_builtins = live_builtins

    async def _call(self, request: ToolCallRequested) -> None:
        recorded = self._recorded.get(request.call_id)
        if recorded is None or (self._live_builtins and request.name in BUILTIN_TOOLS):
            await super()._call(request)
            return
        await self._transfer_impossible(request)  # its transfer event, as the call logged it
        waited_ms = 0.0
        if recorded.acked_after_ms is not None:  # acknowledged, as the call was
            await trio.sleep(recorded.acked_after_ms / 1000.0)
            waited_ms = recorded.acked_after_ms
            await self._send(
                ToolResult(
                    request.call_id,
                    request.name,
                    True,
                    ACK_OUTPUT,
                    request.response_id,
                    pending=True,
                )
            )
        await trio.sleep(max(0.0, recorded.delay_ms - waited_ms) / 1000.0)
        result = ToolResult(
            request.call_id,
            request.name,
            recorded.ok,
            recorded.output,
            request.response_id,
            _after(recorded.after),
            error=recorded.error,
            detail=recorded.detail or {},
        )
        await self._send(result)

    async def _redirect(self, number: str, call_sid: str, twilio: TwilioRest) -> dict[str, Any]:
        if not self._transfers:
            return {
                "redirected": False,
                "reason": "rest_error",
                "detail": "the recording holds no outcome for this transfer",
            }
        outcome = self._transfers.pop(0)
        return {k: v for k, v in outcome.items() if k != "number"}


def replay_tools(call: RecordedCall, agent: AgentSpec) -> Any:
    """A :class:`~..call.MakeTools` for ``call`` replayed on ``agent``: Twilio credentials
    as the call had them (absent when a transfer said so)."""
    live_builtins = decisions_changed(call.agent, agent)
    had_twilio = not any(
        e["type"] == "transfer" and e["payload"].get("reason") == "no_credentials"
        for e in call.events
    )

    def make(
        ctx: CallContext,
        *,
        inbox: trio.MemoryReceiveChannel[ToTools],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
        twilio: TwilioRest | None,
        http: httpx.AsyncClient | None,
        kit: ToolKit,
    ) -> ReplayTools:
        del twilio  # the recording's, below
        return ReplayTools(
            call,
            ctx,
            inbox=inbox,
            to_supervisor=to_supervisor,
            events=events,
            kit=replace(kit, twilio=REPLAY_TWILIO if had_twilio else None, http=http),
            live_builtins=live_builtins,
        )

    return make
