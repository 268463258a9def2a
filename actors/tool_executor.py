"""The tool executor: runs the agent's tools and carries out transfers.

A tool call (:class:`ToolCallRequested`) goes through these steps, each tool
in its own task so a slow tool never holds up another:

1. The tool is looked up among the agent's (:meth:`AgentSpec.function_tools`);
   an unknown name is an ``unknown_tool`` failure.
2. The model's arguments are checked against the tool's JSON Schema
   (:mod:`.tools.arguments`); a mismatch is an ``invalid_arguments`` failure the
   model sees, and nothing runs.
3. The same tool with the same arguments already running (a provider switched
   meanwhile and its successor asked again) is not run twice: the second call is
   told it is running, and the first call's result follows.
4. The tool runs by its kind (:mod:`.tools.runners`: builtins here, webhooks,
   edge functions, Python tools) under its deadline (``timeout_ms``).
5. When the result is not back after the tool's ``ack_ms`` (at once for an
   ``async`` tool), an acknowledgement goes first (``ToolResult(pending=True)``:
   the agent tells the caller it is checking); the result follows, and the
   supervisor delivers it as a follow-up in the next gap of the conversation.

Every outcome, failures included, is a :class:`ToolResult` (``ok``, ``output``
for the model, ``error`` kind, ``detail``); a tool never crashes the call.

Built-in tools:

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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import structlog
import trio
from twilio.twiml.voice_response import VoiceResponse

from switchboard.orchestrator.agents import ToolSpec, hours_sentence

from .context import CallContext, EventSink
from .messages import (
    AfterResponse,
    HangUpAfterResponse,
    ToolCallRequested,
    ToolResult,
    ToSupervisor,
    ToTools,
    TransferAfterResponse,
    TransferCall,
    TransferFailed,
)
from .tools.arguments import ArgumentChecker
from .tools.invocation import ToolInvocation, ToolOutcome
from .tools.kit import ToolKit, TwilioRest
from .tools.knowledge import SearchKnowledge
from .tools.runners import runner_for

__all__ = ["ACK_OUTPUT", "BUILTIN_TOOLS", "TOOL_TIMEOUT_S", "ToolExecutor", "TwilioRest"]

log = structlog.get_logger("switchboard.tools")

TOOL_TIMEOUT_S = 10.0
"""The Twilio REST request's deadline (a transfer), and how long a pipeline waits for
a tool's first answer (its acknowledgement comes within ``ack_ms``, at most 5 s)."""

BUILTIN_TOOLS = frozenset({"lookup_hours", "transfer_to_human", "hangup_call"})
"""The tools the executor answers itself, from the agent alone (see the module docstring)."""

ACK_OUTPUT = (
    "This is still running; its result is not back yet. Tell the caller in a few words "
    "that you are checking and will have the answer in a moment, and do not guess the "
    "result: it will be given to you as soon as it arrives."
)
"""What the model is given as an acknowledgement (``ToolResult(pending=True)``)."""

NO_RESULT_YET = (
    "The same request is already running; its result is not back yet and will be "
    "given to you as soon as it arrives. Do not call it again."
)


class ToolExecutor:
    """Runs the call's tool calls and transfers (see the module docstring)."""

    def __init__(
        self,
        ctx: CallContext,
        *,
        inbox: trio.MemoryReceiveChannel[ToTools],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
        twilio: TwilioRest | None = None,
        http: httpx.AsyncClient | None = None,
        kit: ToolKit | None = None,
    ) -> None:
        """``kit``: what the tools need (:class:`ToolKit`); without it, one made of
        ``twilio`` and ``http`` alone (the builtins only). With it, those two are unused."""
        if kit is None:
            kit = ToolKit(twilio=twilio, http=http)
        self.ctx = ctx
        self._inbox = inbox
        self._to_supervisor = to_supervisor
        self._events = events
        self._kit = kit
        self._tools = {t.name: t for t in ctx.agent.function_tools()}
        self._arguments = ArgumentChecker()
        self._in_flight: dict[tuple[str, str], str] = {}  # (name, arguments) -> call id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the supervisor closes the inbox (the call is over). Tool calls still
        running then are cancelled: nobody is left to answer. A transfer in progress is
        finished (Twilio's redirect is what ended the call), then the events are closed."""
        try:
            async with (
                self._to_supervisor,
                trio.open_nursery() as transfers,
                trio.open_nursery() as tools,
            ):
                task_status.started()
                async for message in self._inbox:
                    if isinstance(message, ToolCallRequested):
                        tools.start_soon(self._call, message)
                    else:
                        transfers.start_soon(self._transfer, message)
                tools.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._events.aclose()

    async def _call(self, request: ToolCallRequested) -> None:
        spec = self._tools.get(request.name)
        key = (request.name, _canonical(request.arguments))
        running = self._in_flight.get(key)
        if running is not None:
            await self._send(
                _result(request, ToolOutcome(True, NO_RESULT_YET, None, {"duplicate_of": running}))
            )
            return
        self._in_flight[key] = request.call_id
        try:
            async with trio.open_nursery() as nursery:
                if spec is not None:
                    ack_s = 0.0 if spec.is_async else spec.ack_ms / 1000.0
                    nursery.start_soon(self._acknowledge_after, request, ack_s)
                outcome, after = await self._outcome(request, spec)
                nursery.cancel_scope.cancel()
        finally:
            del self._in_flight[key]
        await self._send(_result(request, outcome, after))

    async def _acknowledge_after(self, request: ToolCallRequested, delay_s: float) -> None:
        await trio.sleep(delay_s)
        ack = ToolResult(
            request.call_id, request.name, True, ACK_OUTPUT, request.response_id, pending=True
        )
        await self._send(ack)

    async def _send(self, result: ToolResult) -> None:
        try:
            await self._to_supervisor.send(result)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the call ended while the tool ran

    async def _outcome(
        self, request: ToolCallRequested, spec: ToolSpec | None
    ) -> tuple[ToolOutcome, AfterResponse | None]:
        """What the tool came to, and what it defers until its response is heard."""
        if spec is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return ToolOutcome.failed(
                "unknown_tool", f"There is no tool {request.name!r} (tools: {known})."
            ), None
        problem = self._arguments.problem(spec.name, spec.parameters_json, request.arguments)
        if problem is not None:
            return ToolOutcome.failed(
                "invalid_arguments",
                f"{spec.name} was not run: {problem}. Call it again with valid arguments.",
                problem=problem,
            ), None
        runner = self._kit.runners.get(spec.name)
        if runner is None and spec.kind != "builtin":
            made = runner_for(spec, self._kit)
            if isinstance(made, ToolOutcome):
                return made, None
            runner = made
        with trio.move_on_after(spec.timeout_ms / 1000.0):
            try:
                if runner is None:
                    return await self._builtin(request)
                return await runner(self._invocation(request)), None
            except Exception as exc:  # a runner's bug: the call goes on
                log.exception("tool crashed", tool=spec.name, session_id=str(self.ctx.session_id))
                return ToolOutcome.failed(
                    "crashed",
                    f"{spec.name} failed: {type(exc).__name__}.",
                    error_type=type(exc).__name__,
                ), None
        return ToolOutcome.failed(
            "timeout",
            f"{spec.name} did not answer within {spec.timeout_ms / 1000:g} s.",
            timeout_ms=spec.timeout_ms,
        ), None

    def _invocation(self, request: ToolCallRequested) -> ToolInvocation:
        ctx = self.ctx
        return ToolInvocation(
            call_id=request.call_id,
            name=request.name,
            arguments=request.arguments,
            session_id=ctx.session_id,
            tenant_id=ctx.tenant_id,
            agent_id=ctx.agent_id,
            tenant=ctx.agent.tenant,
            agent=ctx.agent.name,
            call_sid=ctx.call_sid,
            from_number=ctx.from_number,
            to_number=ctx.to_number,
        )

    async def _builtin(
        self, request: ToolCallRequested
    ) -> tuple[ToolOutcome, AfterResponse | None]:
        agent = self.ctx.agent
        impossible = await self._transfer_impossible(request)
        if impossible is not None:
            return impossible, None
        if request.name == "lookup_hours":
            return ToolOutcome(True, hours_sentence(agent)), None
        if request.name == "transfer_to_human":
            if not agent.transfer_number:
                return ToolOutcome.failed(
                    "not_configured", "no transfer number is configured for this agent"
                ), None
            number = agent.transfer_number
            return ToolOutcome(True, f"transferring the caller to {number}"), (
                TransferAfterResponse(number)
            )
        if request.name == "hangup_call":
            return ToolOutcome(True, "ending the call"), HangUpAfterResponse()
        if request.name == "search_knowledge":
            if self._kit.knowledge is None:
                return ToolOutcome.failed(
                    "not_configured", "The documents cannot be searched on this call."
                ), None
            search = SearchKnowledge(self._kit.knowledge)
            return await search(self._invocation(request), self._events.emit), None
        return ToolOutcome.failed("unknown_tool", f"unknown tool {request.name!r}"), None

    def _cannot_redirect(self, call_sid: str | None) -> tuple[str, str] | None:
        """``(reason, detail)`` when no transfer of this call can be redirected, else None."""
        if self._kit.twilio is None:
            return "no_credentials", (
                "Twilio REST credentials are not configured "
                "(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN): the call cannot be redirected"
            )
        if not call_sid:
            return "not_a_phone_call", (
                "the call has no Twilio call SID (a browser or API call): it cannot be redirected"
            )
        return None

    async def _transfer_impossible(self, request: ToolCallRequested) -> ToolOutcome | None:
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
        return ToolOutcome.failed(reason, output, detail=detail)

    async def _transfer(self, command: TransferCall) -> None:
        outcome: Mapping[str, Any]
        impossible = self._cannot_redirect(command.call_sid)
        if impossible is not None:
            reason, detail = impossible
            outcome = {"redirected": False, "reason": reason, "detail": detail}
        else:
            assert self._kit.twilio is not None and command.call_sid
            outcome = await self._redirect(command.number, command.call_sid, self._kit.twilio)
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
        client = self._kit.http or httpx.AsyncClient()
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
            if self._kit.http is None:
                await client.aclose()
        if response.is_success:
            return {"redirected": True, "detail": f"HTTP {response.status_code}"}
        return {
            "redirected": False,
            "reason": "rest_error",
            "detail": f"Twilio answered HTTP {response.status_code}: {response.text[:200]}",
        }


def _result(
    request: ToolCallRequested, outcome: ToolOutcome, after: AfterResponse | None = None
) -> ToolResult:
    return ToolResult(
        request.call_id,
        request.name,
        outcome.ok,
        outcome.output,
        request.response_id,
        after,
        error=outcome.error,
        detail=outcome.detail,
    )


def _canonical(arguments: Mapping[str, Any]) -> str:
    """The arguments as canonical JSON text (equal arguments, equal text)."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
