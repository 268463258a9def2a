"""The tool executor: built-in tools, and transfers through Twilio's REST API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs
from uuid import uuid4

import httpx
import pytest
import trio

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.messages import (
    CallEvent,
    HangUpAfterResponse,
    ToolCallRequested,
    ToolResult,
    ToSupervisor,
    ToTools,
    TransferAfterResponse,
    TransferCall,
    TransferFailed,
)
from switchboard.actors.tool_executor import ToolExecutor, TwilioRest
from switchboard.orchestrator.agent_file import load_agent_file

AGENT = load_agent_file(Path(__file__).parents[1] / "examples" / "receptionist.yaml")


class Harness:
    def __init__(self, twilio: TwilioRest | None, handler: httpx.MockTransport | None) -> None:
        self.ctx = CallContext(uuid4(), uuid4(), uuid4(), AGENT, t0=0.0, call_sid="CA123")
        self.to_tools, tools_inbox = trio.open_memory_channel[ToTools](10)
        to_supervisor, self.results = trio.open_memory_channel[ToSupervisor](10)
        events, self.events = trio.open_memory_channel[CallEvent](100)
        self.http = httpx.AsyncClient(transport=handler) if handler else None
        self.executor = ToolExecutor(
            self.ctx,
            inbox=tools_inbox,
            to_supervisor=to_supervisor,
            events=EventSink(self.ctx, events),
            twilio=twilio,
            http=self.http,
        )

    async def ask(self, tool: str) -> ToolResult:
        await self.to_tools.send(ToolCallRequested("c1", tool, {}, "r1"))
        result = await self.results.receive()
        assert isinstance(result, ToolResult)
        return result

    async def transfer(self) -> CallEvent:
        await self.to_tools.send(TransferCall("+15005550009", "CA123"))
        async for event in self.events:
            if event.type == "transfer":
                return event
        raise AssertionError("no transfer event")


@pytest.fixture
async def harness(request: pytest.FixtureRequest, nursery: trio.Nursery) -> AsyncIterator[Harness]:
    twilio, handler = getattr(request, "param", (None, None))
    h = Harness(twilio, handler)
    await nursery.start(h.executor.run)
    yield h
    await h.to_tools.aclose()


async def test_lookup_hours_speaks_the_agent_files_hours(harness: Harness) -> None:
    result = await harness.ask("lookup_hours")
    assert result.ok and result.output.startswith("Monday to Friday, 8 AM to 6 PM")


async def test_hangup_is_deferred_until_the_goodbye_is_heard(harness: Harness) -> None:
    result = await harness.ask("hangup_call")
    assert result.ok and result.after_response == HangUpAfterResponse()


REST = TwilioRest("AC42", "secret", "https://api.twilio.test")


@pytest.mark.parametrize("harness", [(REST, None)], indirect=True)
async def test_transfer_to_human_defers_the_transfer_to_the_agents_number(harness: Harness) -> None:
    result = await harness.ask("transfer_to_human")
    assert result.ok and result.after_response == TransferAfterResponse("+15005550009")


async def test_without_rest_credentials_transfer_to_human_fails_at_once_and_says_why(
    harness: Harness,
) -> None:
    """Issue 11: the agent announced a transfer that never came; the caller sat in silence."""
    result = await harness.ask("transfer_to_human")
    assert not result.ok and result.after_response is None
    assert "not possible" in result.output  # the agent is told to say so
    event = await harness.events.receive()
    assert event.type == "transfer"
    assert event.payload["redirected"] is False and event.payload["reason"] == "no_credentials"
    assert "TWILIO_ACCOUNT_SID" in event.payload["detail"]


async def test_an_unknown_tool_is_a_failed_result_not_a_crash(harness: Harness) -> None:
    result = await harness.ask("launch_rockets")
    assert not result.ok and result.error == "unknown_tool"
    assert "There is no tool 'launch_rockets'" in result.output


async def test_without_rest_credentials_the_transfer_event_says_nothing_was_redirected(
    harness: Harness,
) -> None:
    event = await harness.transfer()
    assert event.payload["redirected"] is False
    assert "TWILIO_ACCOUNT_SID" in event.payload["detail"]


requests: list[httpx.Request] = []


def twilio_api(request: httpx.Request) -> httpx.Response:
    requests.append(request)
    return httpx.Response(200, json={"sid": "CA123", "status": "in-progress"})


@pytest.mark.parametrize(
    "harness",
    [(TwilioRest("AC42", "secret", "https://api.twilio.test"), httpx.MockTransport(twilio_api))],
    indirect=True,
)
async def test_with_rest_credentials_the_live_call_is_redirected_to_dial(harness: Harness) -> None:
    requests.clear()
    event = await harness.transfer()
    assert event.payload["redirected"] is True
    (request,) = requests
    assert request.method == "POST"
    assert str(request.url) == "https://api.twilio.test/2010-04-01/Accounts/AC42/Calls/CA123.json"
    assert request.headers["Authorization"] == httpx.BasicAuth("AC42", "secret")._auth_header
    twiml = parse_qs(request.content.decode())["Twiml"][0]
    assert "<Dial>+15005550009</Dial>" in twiml


@pytest.mark.parametrize(
    "harness",
    [
        (
            TwilioRest("AC42", "secret", "https://api.twilio.test"),
            httpx.MockTransport(lambda r: httpx.Response(404, text="call not found")),
        )
    ],
    indirect=True,
)
async def test_a_refused_redirect_is_reported_in_the_event_and_to_the_supervisor(
    harness: Harness,
) -> None:
    event = await harness.transfer()
    assert event.payload["redirected"] is False and "HTTP 404" in event.payload["detail"]
    failed = await harness.results.receive()
    assert failed == TransferFailed("+15005550009", "rest_error", event.payload["detail"])
