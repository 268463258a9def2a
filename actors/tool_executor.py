"""The tool executor: runs the agent's tools and carries out transfers.

Built-in tools (the ones the offline demo needs):

- ``lookup_hours``: the agent file's ``hours``, as a sentence to speak.
- ``transfer_to_human``: answers at once and defers the transfer until the
  caller has heard the agent's announcement; the transfer then redirects the
  live call to ``<Dial>`` the agent's ``transfer_number`` through Twilio's REST
  API ("Modify a Call": POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json
  with ``Twiml``). When the call cannot be redirected at all (no Twilio REST
  credentials, or no call SID: a browser or API call), the tool fails at once
  (``ok=False``, an output telling the agent to say so) and the ``transfer``
  event says why, so the agent tells the caller and the call goes on instead of
  waiting in silence for a transfer that never comes.
- A deferred transfer (the tool's, or the failover apology's) that is not
  redirected is logged (``transfer`` with ``redirected: false``) and reported
  to the supervisor (:class:`TransferFailed`).
- ``hangup_call``: answers at once; the call ends once the goodbye is heard.

Each tool runs in its own task with a timeout, so a slow tool never holds up
another; a tool's failure is a ``ToolResult(ok=False)``, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
import trio
from twilio.twiml.voice_response import VoiceResponse

from switchboard.orchestrator.agents import hours_sentence

from .context import CallContext, EventSink
from .messages import (
    HangUpAfterResponse,
    ToolCallRequested,
    ToolResult,
    ToSupervisor,
    ToTools,
    TransferAfterResponse,
    TransferCall,
    TransferFailed,
)

log = structlog.get_logger("switchboard.tools")

TOOL_TIMEOUT_S = 10.0

BUILTIN_TOOLS = frozenset({"lookup_hours", "transfer_to_human", "hangup_call"})
"""The tools the executor answers itself, from the agent alone (see the module docstring)."""


@dataclass(frozen=True)
class TwilioRest:
    """Credentials for Twilio's REST API; ``api_base`` is overridable for tests."""

    account_sid: str
    auth_token: str
    api_base: str = "https://api.twilio.com"


class ToolExecutor:
    def __init__(
        self,
        ctx: CallContext,
        *,
        inbox: trio.MemoryReceiveChannel[ToTools],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
        twilio: TwilioRest | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.ctx = ctx
        self._inbox = inbox
        self._to_supervisor = to_supervisor
        self._events = events
        self._twilio = twilio
        self._http = http

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._to_supervisor, trio.open_nursery() as nursery:
            task_status.started()
            try:
                async for message in self._inbox:
                    if isinstance(message, ToolCallRequested):
                        nursery.start_soon(self._call, message)
                    else:
                        nursery.start_soon(self._transfer, message)
            finally:
                with trio.CancelScope(shield=True):
                    await self._events.aclose()

    async def _call(self, request: ToolCallRequested) -> None:
        with trio.move_on_after(TOOL_TIMEOUT_S) as scope:
            result = await self._transfer_impossible(request) or self._run_builtin(request)
        if scope.cancelled_caught:
            result = ToolResult(
                request.call_id,
                request.name,
                False,
                f"tool {request.name} timed out after {TOOL_TIMEOUT_S:g} s",
                request.response_id,
            )
        try:
            await self._to_supervisor.send(result)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the call ended while the tool ran

    def _run_builtin(self, request: ToolCallRequested) -> ToolResult:
        agent = self.ctx.agent

        def result(ok: bool, output: str, after: Any = None) -> ToolResult:
            return ToolResult(request.call_id, request.name, ok, output, request.response_id, after)

        if request.name == "lookup_hours":
            return result(True, hours_sentence(agent))
        if request.name == "transfer_to_human":
            if not agent.transfer_number:
                return result(False, "no transfer number is configured for this agent")
            return result(
                True,
                f"transferring the caller to {agent.transfer_number}",
                TransferAfterResponse(agent.transfer_number),
            )
        if request.name == "hangup_call":
            return result(True, "ending the call", HangUpAfterResponse())
        return result(False, f"unknown tool {request.name!r}")

    def _cannot_redirect(self, call_sid: str | None) -> tuple[str, str] | None:
        """``(reason, detail)`` when no transfer of this call can be redirected, else None."""
        if self._twilio is None:
            return "no_credentials", (
                "Twilio REST credentials are not configured "
                "(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN): the call cannot be redirected"
            )
        if not call_sid:
            return "not_a_phone_call", (
                "the call has no Twilio call SID (a browser or API call): it cannot be redirected"
            )
        return None

    async def _transfer_impossible(self, request: ToolCallRequested) -> ToolResult | None:
        """``transfer_to_human`` on a call that cannot be redirected: a failed result
        the agent can say, and the ``transfer`` event with the reason. Else None."""
        number = self.ctx.agent.transfer_number
        if request.name != "transfer_to_human" or not number:
            return None
        impossible = self._cannot_redirect(self.ctx.call_sid)
        if impossible is None:
            return None
        reason, detail = impossible
        await self._events.emit(
            "transfer", number=number, redirected=False, reason=reason, detail=detail
        )
        output = (
            "The transfer is not possible: nobody can be put through on this call. "
            "Tell the caller you cannot transfer them to a person right now, "
            "and offer to help them yourself."
        )
        return ToolResult(request.call_id, request.name, False, output, request.response_id)

    async def _transfer(self, command: TransferCall) -> None:
        outcome: Mapping[str, Any]
        impossible = self._cannot_redirect(command.call_sid)
        if impossible is not None:
            reason, detail = impossible
            outcome = {"redirected": False, "reason": reason, "detail": detail}
        else:
            assert self._twilio is not None and command.call_sid
            outcome = await self._redirect(command.number, command.call_sid, self._twilio)
        await self._events.emit("transfer", number=command.number, **outcome)
        if not outcome["redirected"]:
            failed = TransferFailed(command.number, outcome["reason"], outcome["detail"])
            try:
                await self._to_supervisor.send(failed)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # the call ended meanwhile

    async def _redirect(self, number: str, call_sid: str, twilio: TwilioRest) -> dict[str, Any]:
        twiml = VoiceResponse()
        twiml.dial(number)
        url = f"{twilio.api_base}/2010-04-01/Accounts/{twilio.account_sid}/Calls/{call_sid}.json"
        client = self._http or httpx.AsyncClient()
        try:
            with trio.fail_after(TOOL_TIMEOUT_S):
                response = await client.post(
                    url, data={"Twiml": str(twiml)}, auth=(twilio.account_sid, twilio.auth_token)
                )
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            log.warning("transfer failed", error=repr(exc))
            return {
                "redirected": False,
                "reason": "rest_error",
                "detail": f"Twilio REST call failed: {exc!r}",
            }
        finally:
            if self._http is None:
                await client.aclose()
        if response.is_success:
            return {"redirected": True, "detail": f"HTTP {response.status_code}"}
        return {
            "redirected": False,
            "reason": "rest_error",
            "detail": f"Twilio answered HTTP {response.status_code}: {response.text[:200]}",
        }
