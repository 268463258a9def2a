"""The ``local`` provider as the shared pipeline with offline stages, after a failover.

``local`` is the last link of every chain: when the provider before it fails
in the middle of an answer, it starts with the conversation so far and must
answer the caller's last turn at once, from its text alone.

(Real clock: synthesis runs in a speech worker process, which Trio's
MockClock would jump over; nothing here waits on time.)
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import pytest
import trio

from switchboard.actors.context import PHONE_AUDIO, CallContext, EventSink
from switchboard.actors.local.assets import LocalAssets
from switchboard.actors.local.provider import LocalProvider
from switchboard.actors.local.workers import SpeechWorkers
from switchboard.actors.messages import (
    AgentAudio,
    AgentSaid,
    AgentTranscript,
    CallerSaid,
    CallerText,
    CallerTranscript,
    CallEvent,
    ConversationItem,
    ResponseDone,
    ResponseStarted,
    ToolCallRequested,
    ToolResult,
    ToProvider,
    ToSupervisor,
)
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.agents import hours_sentence

EXAMPLE = Path(__file__).parent.parent / "examples" / "receptionist.yaml"
AGENT = parse_agent_yaml(EXAMPLE.read_text(), str(EXAMPLE))


@pytest.fixture(scope="module")
def assets() -> LocalAssets:
    return LocalAssets(AGENT, SpeechWorkers(1))


async def run_provider(
    assets: LocalAssets,
    *,
    conversation: tuple[ConversationItem, ...] = (),
    greet: bool = False,
    typed: str | None = None,
    passages: tuple[tuple[str, str], ...] = (),
) -> tuple[list[ToSupervisor], LocalProvider]:
    """Run the provider (``respond_now`` after a failover's ``conversation``, or given the
    ``typed`` line); play the tool executor (``search_knowledge`` finds ``passages``,
    (heading, text) pairs); collect until the first answer that is not the greeting is
    done."""
    ctx = CallContext(uuid4(), uuid4(), uuid4(), AGENT, trio.current_time(), PHONE_AUDIO)
    provider = LocalProvider(
        ctx, assets, greet=greet, conversation=conversation, respond_now=bool(conversation)
    )
    to_provider, inbox = trio.open_memory_channel[ToProvider](64)
    outbox, from_provider = trio.open_memory_channel[ToSupervisor](1000)
    events, _ = trio.open_memory_channel[CallEvent](1000)
    seen: list[ToSupervisor] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(provider, inbox, outbox, EventSink(ctx, events))
        if typed is not None:
            await to_provider.send(CallerText(typed))
        with trio.fail_after(30):
            async for message in from_provider:
                seen.append(message)
                if isinstance(message, ToolCallRequested):
                    output = hours_sentence(AGENT)
                    if message.name == "search_knowledge":  # as the tool answers
                        output = json.dumps(
                            {
                                "query": message.arguments["query"],
                                "passages": [
                                    {"source": "faq.md", "heading": h, "text": t, "score": 0.5}
                                    for h, t in passages
                                ],
                            }
                        )
                    await to_provider.send(
                        ToolResult(message.call_id, message.name, True, output, message.response_id)
                    )
                if isinstance(message, ResponseDone) and message.response_id != "greeting":
                    break
        await to_provider.aclose()
    return seen, provider


async def test_the_last_caller_turn_is_answered_from_its_text_with_the_intents_tool(
    assets: LocalAssets,
) -> None:
    before = (AgentSaid(AGENT.greeting), CallerSaid("Hi, um, when are you open tomorrow?"))
    seen, provider = await run_provider(assets, conversation=before)
    started = next(m for m in seen if isinstance(m, ResponseStarted))
    (call,) = [m for m in seen if isinstance(m, ToolCallRequested)]
    (transcript,) = [m for m in seen if isinstance(m, AgentTranscript)]
    audio = [m.chunk for m in seen if isinstance(m, AgentAudio)]
    assert not started.greeting and call.name == "lookup_hours"
    assert transcript.text == f"We are open {hours_sentence(AGENT).rstrip('.')}."
    assert audio and all(c.encoding == "pcmu" and c.sample_rate == 8000 for c in audio)
    assert sum(c.duration_ms for c in audio) > 2000
    assert provider.history[: len(before)] == list(before)
    assert provider.history[-1] == AgentSaid(transcript.text)


async def test_a_turn_with_no_intent_phrase_nothing_in_the_knowledge_gets_the_no_match_reply(
    assets: LocalAssets,
) -> None:
    seen, _ = await run_provider(assets, conversation=(CallerSaid("my tooth hurts a lot"),))
    (transcript,) = [m for m in seen if isinstance(m, AgentTranscript)]
    (call,) = [m for m in seen if isinstance(m, ToolCallRequested)]
    assert (call.name, call.arguments) == ("search_knowledge", {"query": "my tooth hurts a lot"})
    assert transcript.text == " ".join(AGENT.no_match_reply.split())


async def test_a_typed_line_is_answered_by_its_intent_after_the_greeting(
    assets: LocalAssets,
) -> None:
    """The local agent has no audio of a typed line: its intent comes from the text."""
    line = "Hello! When are you open on Saturday?"
    seen, provider = await run_provider(assets, greet=True, typed=line)

    started = [m for m in seen if isinstance(m, ResponseStarted)]
    assert [s.greeting for s in started] == [True, False]  # the greeting first, then the answer
    (call,) = [m for m in seen if isinstance(m, ToolCallRequested)]
    assert call.name == "lookup_hours"
    answer = [m for m in seen if isinstance(m, AgentTranscript)][-1]
    assert answer.text == f"We are open {hours_sentence(AGENT).rstrip('.')}."
    answer_audio = [
        m.chunk
        for m in seen
        if isinstance(m, AgentAudio) and m.response_id == started[1].response_id
    ]
    assert sum(c.duration_ms for c in answer_audio) > 2000
    assert not any(isinstance(m, CallerTranscript) for m in seen)  # the supervisor logs the turn
    assert CallerSaid(line) in provider.history


async def test_a_turn_with_no_intent_phrase_is_answered_from_the_knowledge(
    assets: LocalAssets,
) -> None:
    answer = (
        "Yes, there is free parking behind the building. The entrance is on Oak Lane. "
        "Bus 12 stops in front."
    )
    seen, _ = await run_provider(
        assets,
        conversation=(CallerSaid("Is there parking near you?"),),
        passages=(("Is there parking?", answer),),
    )
    (call,) = [m for m in seen if isinstance(m, ToolCallRequested)]
    (transcript,) = [m for m in seen if isinstance(m, AgentTranscript)]
    assert call.arguments == {"query": "Is there parking near you?"}
    assert transcript.text == (
        "Yes, there is free parking behind the building. The entrance is on Oak Lane."
    )
