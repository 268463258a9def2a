"""The local provider answers knowledge questions from the agent's documents.

The policy's parts (which questions the recognizer knows, what is searched, what
is said) are pure and tested directly; then a whole phone call on the real
clock (speech is recognized and synthesized in worker processes) asks the example
receptionist a question from its shipped FAQ, and hears the answer, with its
``retrieval`` event.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import trio
from call_harness import FakeTwilio, MemoryStore, transport_for

from switchboard.actors.context import CallContext
from switchboard.actors.local.assets import AssetRegistry, LocalAssets
from switchboard.actors.local.policy import (
    KNOWLEDGE_INTENT_PREFIX,
    TOOL_FAILED_REPLY,
    TOOL_PENDING_REPLY,
    knowledge_intents,
    knowledge_query,
    knowledge_reply,
    spoken_passage,
)
from switchboard.actors.local.speech import SpeechService
from switchboard.actors.local.stages import IntentPolicy
from switchboard.actors.local.workers import SpeechWorkers
from switchboard.actors.messages import CallerTranscript, ToolResult
from switchboard.actors.pipeline import ToolCall
from switchboard.actors.tools.invocation import KnowledgeSearch
from switchboard.codecs import twilio_media as wire
from switchboard.codecs import ulaw_encode
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.agents import KnowledgeSource
from switchboard.orchestrator.call import CallResources, run_call
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.knowledge import chunk_sources
from switchboard.orchestrator.knowledge_store import KnowledgeIndex
from switchboard.orchestrator.store import EventRow, Store
from switchboard.testing.speech import speak

AGENT = load_agent_file(Path(__file__).resolve().parent.parent / "examples" / "receptionist.yaml")
INSURANCE = next(c for c in chunk_sources(AGENT.knowledge) if c.heading == "Do you take insurance?")


LONG = "A first sentence " + "that goes on " * 14 + "and ends."


def search_output(*passages: tuple[str, str], every_word: bool = True) -> str:
    return json.dumps(
        {
            "query": "q",
            "passages": [
                {
                    "source": "faq.md",
                    "heading": h,
                    "text": t,
                    "score": 0.5,
                    "every_word": every_word,
                }
                for h, t in passages
            ],
        }
    )


# -- the policy's parts -------------------------------------------------------------


def test_the_faq_questions_become_recognizer_intents_unless_an_intent_has_the_phrase() -> None:
    intents = knowledge_intents(AGENT)
    assert intents[KNOWLEDGE_INTENT_PREFIX + "Do you take insurance"] == ("Do you take insurance",)
    assert len(intents) == 9
    clash = replace(
        AGENT,
        knowledge=(*AGENT.knowledge, KnowledgeSource("x.md", "## When are you open?\n\nDaily.")),
    )
    assert KNOWLEDGE_INTENT_PREFIX + "When are you open" not in knowledge_intents(clash)
    grammar = LocalAssets(AGENT, SpeechWorkers(1)).grammar.as_mapping()
    assert grammar["hours"] == AGENT.intent("hours").phrases  # type: ignore[union-attr]
    assert set(intents) <= set(grammar)


def test_what_is_searched() -> None:
    question = KNOWLEDGE_INTENT_PREFIX + "Is there parking"
    assert knowledge_query(AGENT, question, "is there a parking") == "Is there parking"
    assert knowledge_query(AGENT, None, "my tooth hurts") == "my tooth hurts"
    assert knowledge_query(AGENT, "hours", "when are you open") is None  # an intent answers
    assert knowledge_query(AGENT, None, "  ") is None
    assert knowledge_query(replace(AGENT, knowledge=()), None, "my tooth hurts") is None


def test_what_is_said_after_the_search() -> None:
    found = search_output(("Is there parking?", "Yes, behind the building. Bus 12 stops here."))
    assert knowledge_reply(AGENT, True, found, asked=True) == (
        "Yes, behind the building. Bus 12 stops here."
    )
    assert knowledge_reply(AGENT, True, search_output(), asked=True) == AGENT.no_match_reply
    assert knowledge_reply(AGENT, False, "unavailable", asked=True) == TOOL_FAILED_REPLY
    assert knowledge_reply(AGENT, False, "unavailable", asked=False) == AGENT.no_match_reply
    checking = "checking that for you"
    assert knowledge_reply(AGENT, True, checking, asked=True, pending=True) == TOOL_PENDING_REPLY
    some = search_output(("Q", "Arrive ten minutes early."), every_word=False)
    assert knowledge_reply(AGENT, True, some, asked=False) == "Arrive ten minutes early."
    # words of the local recognizer's own transcript ("ten of clubs"): all must match
    assert knowledge_reply(AGENT, True, some, asked=False, every_word=True) == (
        AGENT.no_match_reply
    )
    assert knowledge_reply(AGENT, True, found, asked=False, every_word=True) == (
        "Yes, behind the building. Bus 12 stops here."
    )


@pytest.mark.parametrize(
    ("passage", "spoken"),
    [
        ("One. Two. Three.", "One. Two."),
        (f"{LONG} {LONG}", LONG),
        (
            "Bring:\n- a photo ID;\n- your card\n- a list.\n\nThanks.",
            "Bring: a photo ID, your card and a list. Thanks.",
        ),
        ("See https://example.com/forms for the form. Thanks.", "See for the form. Thanks."),
        ("word " * 100, ("word " * 60).strip() + "."),
        (INSURANCE.text, INSURANCE.text.split("\n\n")[0].replace("\n", " ")),
    ],
)
def test_a_passage_is_spoken_as_its_first_sentence_or_two(passage: str, spoken: str) -> None:
    assert spoken_passage(passage, 300) == spoken


async def test_a_recognized_question_is_searched_as_the_document_asks_it() -> None:
    calls: list[ToolCall] = []
    said: list[str] = []

    async def call_tool(call: ToolCall) -> ToolResult:
        calls.append(call)
        return ToolResult("c1", call.name, True, search_output(("Q", "Yes. We do.")), "r1")

    async def say(text: str) -> None:
        said.append(text)

    heard = CallerTranscript("do you take a shoe ants", 0, 900, "knowledge: Do you take insurance")
    await IntentPolicy(AGENT)((), heard, say, call_tool)
    assert calls == [ToolCall("search_knowledge", {"query": "Do you take insurance"})]
    assert said == ["Yes. We do."]


# -- a phone call --------------------------------------------------------------------


def rows(store: MemoryStore, type_: str) -> list[EventRow]:
    return [store.events[s] for s in sorted(store.events) if store.events[s].type == type_]


async def phone_call(
    question: str, speech: SpeechService, index: KnowledgeSearch, tenant_id: UUID, agent_id: UUID
) -> tuple[MemoryStore, float]:
    """The caller waits for the greeting, asks ``question``, listens to the whole answer and
    hangs up. Returns the call's events and the seconds of agent audio heard after the
    question."""
    ctx = CallContext(
        uuid4(),
        tenant_id,
        agent_id,
        AGENT,
        t0=trio.current_time(),
        call_sid="CA1",
        stream_sid="MZ1",
    )
    twilio, store = FakeTwilio(), MemoryStore()
    res = CallResources(store=store, assets=AssetRegistry(speech), knowledge=index)  # type: ignore[arg-type]
    line = ulaw_encode(speak(question, 8000))
    line += b"\xff" * (-len(line) % 160)
    encoder = wire.InboundEncoder("MZ1", "CA1", "AC1")

    async def frames(audio: bytes) -> None:
        for offset in range(0, len(audio), 160):
            await twilio.to_server.send(encoder.media(audio[offset : offset + 160]))
            await trio.sleep(0.02)

    async def quiet_until(done: Any) -> None:
        while not done():
            await frames(b"\xff" * 160 * 5)

    def greeted() -> bool:
        return bool(twilio.heard) and trio.current_time() > twilio.playout_end + 0.3

    asked_at: list[float] = []

    async def caller() -> None:
        with trio.fail_after(90):
            await quiet_until(greeted)
            await frames(line)
            asked_at.append(trio.current_time())
            await quiet_until(lambda: rows(store, "turn:agent")[1:])
            await quiet_until(lambda: trio.current_time() > twilio.playout_end + 0.3)
        await twilio.to_server.send(encoder.stop())

    async with trio.open_nursery() as nursery:
        twilio.nursery = nursery
        nursery.start_soon(caller)
        await run_call(ctx, transport_for(ctx, twilio), res)
        nursery.cancel_scope.cancel()
    heard_s = sum(end - start for start, end in twilio.heard if start >= asked_at[0])
    return store, heard_s


async def test_a_caller_asks_the_example_faq_and_hears_the_answer(
    store: Store, database: Database
) -> None:
    agent_id = await trio.to_thread.run_sync(store.apply_agent, AGENT)
    tenant_id = await trio.to_thread.run_sync(store.tenant_by_name, "demo")
    assert tenant_id is not None
    speech = SpeechWorkers(1)
    calls, heard_s = await phone_call(
        "do you take insurance", speech, KnowledgeIndex(database), tenant_id, agent_id
    )
    (user,) = rows(calls, "turn:user")
    assert user.payload["intent"] == KNOWLEDGE_INTENT_PREFIX + "Do you take insurance"
    (retrieval,) = rows(calls, "retrieval")
    assert retrieval.payload["query"] == "Do you take insurance"
    assert retrieval.payload["hits"][0]["heading"] == "Do you take insurance?"
    assert retrieval.payload["hits"][0]["source"] == "knowledge/faq.md"
    assert retrieval.payload["hits"][0]["score"] > 0 and "error" not in retrieval.payload
    _greeting, answer = rows(calls, "turn:agent")
    assert answer.payload["text"] == spoken_passage(INSURANCE.text)
    assert answer.payload["text"].startswith("Yes, we accept most major dental insurance plans")
    assert not answer.payload["interrupted"]
    assert heard_s > 8.0  # the two sentences, spoken (about 12 s with eSpeak NG)
