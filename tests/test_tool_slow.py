"""Slow tools keep the caller company: acknowledged within ``ack_ms``, the result follows.

Through the real call nursery on Trio's MockClock, with the OpenAI Realtime and
Gemini Live fakes and a tool that takes its time (a runner in place of the
agent's webhook, so the timing is the test's). What the caller hears is read
off the fake Twilio's playout clock.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import trio
import trio.testing
from provider_calls import Call, place_call
from tool_harness import ExecutorHarness

from switchboard.actors.conversation import TOOL_RUNNING
from switchboard.actors.tool_executor import ACK_OUTPUT
from switchboard.actors.tools.invocation import Passage, ToolInvocation, ToolOutcome
from switchboard.actors.tools.kit import ToolKit
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.agents import KnowledgeSource
from switchboard.orchestrator.replay.compare import compare_events
from switchboard.orchestrator.replay.engine import replay_trace
from switchboard.testing import Fault, Script, ToolStep, Turn

AGENT = parse_agent_yaml(
    "name: shop\ntenant: t\ngreeting: Thanks for calling the shop.\n"
    "instructions: You are a shop assistant.\nmode: openai-realtime\nfallback: [gemini-live]\n"
    "idle_timeout_seconds: 60\nintents: []\n"
    "tools:\n"
    "  - name: check_order\n"
    "    description: Where an order is.\n"
    "    url: https://shop.example/orders\n"
    "    parameters: {type: object, properties: {order: {type: string}}, required: [order]}\n"
)
LINE = "where is my order"
ORDER = {"order": "A17"}
ANSWER = '{"order": "A17", "status": "ships tomorrow"}'


class SlowTool:
    """Answers ``ANSWER`` after ``seconds`` of virtual time; counts its runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.runs: list[tuple[float, ToolInvocation]] = []

    async def __call__(self, invocation: ToolInvocation) -> ToolOutcome:
        self.runs.append((trio.current_time(), invocation))
        await trio.sleep(self.seconds)
        return ToolOutcome(True, ANSWER)


async def acknowledged_call(tool: SlowTool, *, hang_up_at: float, record: bool = False) -> Call:
    """The caller asks where their order is at 3 s; the model calls ``check_order``
    (``tool``), says it is checking once acknowledged, and the result when it comes."""
    return await place_call(
        AGENT,
        Script(
            turns=(
                Turn(
                    tool=ToolStep("check_order", ORDER),
                    then_say="Let me check that for you.",
                    caller_text=LINE,
                    follow_up="Your order A17 ships tomorrow.",
                ),
            )
        ),
        Script(),
        lines=(LINE,),
        speak_at=(3.0,),
        hang_up_at=hang_up_at,
        tool_runners={"check_order": tool},
        record=record,
    )


def texts(call: Call) -> list[str]:
    return [e.payload["text"] for e in call.events("turn:agent")]


async def test_a_five_second_tool_is_acknowledged_before_two_seconds_then_answered(
    autojump_clock: trio.abc.Clock,
) -> None:
    tool = SlowTool(5.0)
    call = await acknowledged_call(tool, hang_up_at=16.0)
    (called,) = call.events("tool:call")
    (ack,) = call.events("tool:ack")
    (result,) = call.events("tool:result")
    assert len(tool.runs) == 1 and dict(tool.runs[0][1].arguments) == ORDER
    assert ack.payload["after_ms"] == pytest.approx(1500, abs=50)
    assert result.payload["ok"] and result.payload["output"] == ANSWER
    assert result.payload["latency_ms"] == pytest.approx(5000, abs=50)
    assert result.payload["acked_after_ms"] == pytest.approx(1500, abs=50)
    # The caller hears the agent again within 2 s of the tool call (the acknowledgement),
    # though the tool takes 5 s.
    _, heard = call.twilio.heard_again_after(call.at(called))
    assert heard - call.at(called) < 2.0
    # The model was given the acknowledgement as the call's output, then the result as a
    # note once it came, and said it after it came.
    outputs = [
        e["item"]["output"]
        for e in call.openai.received
        if e["type"] == "conversation.item.create" and e["item"]["type"] == "function_call_output"
    ]
    assert outputs == [ACK_OUTPUT]
    notes = [
        e["item"]["content"][0]["text"]
        for e in call.openai.received
        if e["type"] == "conversation.item.create" and e["item"].get("role") == "system"
    ]
    assert len(notes) == 1 and ANSWER in notes[0]
    assert texts(call)[-2:] == ["Let me check that for you.", "Your order A17 ships tomorrow."]
    follow_up = call.events("turn:agent")[-1]
    assert call.at(follow_up) > call.at(result)
    _, heard_result = call.twilio.heard_again_after(call.at(result))
    assert heard_result - call.at(result) < 0.5  # said in the gap that was waiting for it


async def test_a_failover_while_a_tool_runs_does_not_run_it_again_and_its_result_arrives(
    autojump_clock: trio.abc.Clock,
) -> None:
    tool = SlowTool(5.0)
    call = await place_call(
        AGENT,
        Script(
            turns=(Turn(tool=ToolStep("check_order", ORDER), caller_text=LINE),),
            # The connection drops as the response that asked for the tool ends.
            faults=(Fault("drop", turn=1, after_messages=5),),
        ),
        # The backup's first answer is to the runtime's note with the result.
        Script(turns=(Turn(say="Your order A17 ships tomorrow."),)),
        lines=(LINE,),
        speak_at=(3.0,),
        hang_up_at=16.0,
        tool_runners={"check_order": tool},
    )
    (called,) = call.events("tool:call")
    (failed,) = call.events("provider.failed")
    (result,) = call.events("tool:result")
    assert failed.payload["kind"] == "disconnect"
    assert called.seq < failed.seq and call.at(failed) < call.at(result)
    assert len(tool.runs) == 1
    assert result.payload["output"] == ANSWER
    # The backup never heard of the call's id: no acknowledgement or output reached it
    # as a tool response (it did not ask); the result came to it as a note.
    assert not any("ToolResponse" in repr(m) for m in call.gemini.received)
    # The backup started from a conversation that showed the call as running (so a model
    # does not ask for it again), then was given its result, and said it.
    context = json.dumps([repr(m) for m in call.gemini.received])
    assert TOOL_RUNNING.split(";")[0] in context and "ships tomorrow" in context
    said = next(e for e in call.events("turn:agent") if "ships" in e.payload["text"])
    assert call.at(said) > call.at(result)


async def test_the_same_call_while_it_runs_is_not_run_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The executor's own guard: a second request for the same tool with the same
    arguments while the first runs is answered "already running", not run."""
    tool = SlowTool(5.0)
    harness = ExecutorHarness(AGENT, {"check_order": tool})
    async with harness.running():
        await harness.ask("c1", "check_order", ORDER)
        await trio.sleep(1.0)
        await harness.ask("c2", "check_order", {"order": "A17"})
        second = await harness.result_of("c2")
        first = await harness.result_of("c1")
    assert len(tool.runs) == 1
    assert second.ok and second.detail == {"duplicate_of": "c1"} and not second.pending
    assert first.output == ANSWER


async def test_an_async_tool_is_acknowledged_at_once_and_a_quick_one_never(
    autojump_clock: trio.abc.Clock,
) -> None:
    agent = replace(
        AGENT,
        tools=(
            replace(AGENT.tools[0], is_async=True),
            replace(AGENT.tools[0], name="quick_order"),
        ),
    )
    slow, quick = SlowTool(3.0), SlowTool(1.0)
    harness = ExecutorHarness(agent, {"check_order": slow, "quick_order": quick})
    async with harness.running():
        t0 = trio.current_time()
        await harness.call("check_order", ORDER)
        await harness.call("quick_order", ORDER)
    acks = [(at - t0, a.name) for at, a in harness.answers if a.pending]
    assert acks == [(0.0, "check_order")]
    assert [a.name for _, a in harness.answers if not a.pending] == ["check_order", "quick_order"]


async def test_a_tool_past_its_deadline_is_a_timeout_and_the_executor_goes_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    agent = replace(AGENT, tools=(replace(AGENT.tools[0], timeout_ms=4000),))
    harness = ExecutorHarness(agent, {"check_order": SlowTool(30.0)})
    async with harness.running():
        t0 = trio.current_time()
        result = await harness.call("check_order", ORDER)
        waited = trio.current_time() - t0
    assert not result.ok and result.error == "timeout"
    assert waited == pytest.approx(4.0)
    assert "4 s" in result.output


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "'order' is a required property"),
        ({"order": 17}, "arguments.order: 17 is not of type 'string'"),
    ],
)
async def test_arguments_that_break_the_schema_are_refused_before_the_tool_runs(
    arguments: dict[str, object], problem: str
) -> None:
    tool = SlowTool(0.0)
    harness = ExecutorHarness(AGENT, {"check_order": tool})
    async with harness.running():
        result = await harness.call("check_order", arguments)
    assert not result.ok and result.error == "invalid_arguments"
    assert problem in result.output and "Call it again" in result.output
    assert tool.runs == []


class SlowSearch:
    """A knowledge index that answers after ``seconds`` of virtual time."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds

    async def search(
        self, tenant_id: object, agent_id: object, query: str, limit: int
    ) -> list[Passage]:
        await trio.sleep(self.seconds)
        return [Passage("faq.md", "We have parking behind the building.", 0.5)]


async def test_a_builtin_past_its_deadline_is_a_timeout_too(
    autojump_clock: trio.abc.Clock,
) -> None:
    agent = replace(AGENT, knowledge=(KnowledgeSource("faq.md", "Parking is behind."),))
    harness = ExecutorHarness(agent, kit=ToolKit(knowledge=SlowSearch(60.0)))
    async with harness.running():
        t0 = trio.current_time()
        result = await harness.call("search_knowledge", {"query": "parking"})
        waited = trio.current_time() - t0
    assert (result.ok, result.error) == (False, "timeout")
    assert waited == pytest.approx(10.0)  # the default timeout_ms
    assert [a.pending for _, a in harness.answers] == [True, False]  # acknowledged at 1.5 s


async def test_a_tool_still_running_when_the_call_ends_is_dropped_without_a_crash(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The call ends (the supervisor closes the executor's inbox) during a search that
    would log its ``retrieval`` event later: the search is cancelled, nothing is logged
    after the event log closed, and the executor ends at once."""
    agent = replace(AGENT, knowledge=(KnowledgeSource("faq.md", "Parking is behind."),))
    harness = ExecutorHarness(agent, kit=ToolKit(knowledge=SlowSearch()))
    async with harness.running():
        await harness.ask("c1", "search_knowledge", {"query": "parking"})
        await harness.ask("c2", "check_order", ORDER)  # not configured: answered at once
        assert (await harness.result_of("c2")).error == "not_configured"
        await trio.sleep(1.0)
        ended_at = trio.current_time()
    assert trio.current_time() == ended_at  # nothing waited for the search
    assert not any(a.call_id == "c1" and not a.pending for _, a in harness.answers)
    assert [e.type for e in harness.events] == []


def test_a_call_with_an_acknowledged_tool_replays_event_for_event() -> None:
    """The replay's recorded tool acknowledges at the recorded ``tool:ack`` and answers
    at the recorded ``tool:result``; the follow-up comes in the same gap."""

    async def main() -> Call:
        return await acknowledged_call(SlowTool(5.0), hang_up_at=14.0, record=True)

    trace = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)).trace()
    assert [e["type"] for e in trace.events].count("tool:ack") == 1
    replay = replay_trace(trace)
    comparison = compare_events(trace.events, replay.events, tolerance_ms=0)
    assert comparison.matches, comparison.first and comparison.first.describe()
