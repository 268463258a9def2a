"""The builtin ``search_knowledge`` tool: passages for the model, one ``retrieval`` event per
search, and every failure a tool error the model sees, never a crash."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import trio

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.messages import (
    CallEvent,
    ToolCallRequested,
    ToolResult,
    ToSupervisor,
    ToTools,
)
from switchboard.actors.tool_executor import ToolExecutor
from switchboard.actors.tools.invocation import Passage, ToolInvocation
from switchboard.actors.tools.kit import ToolKit
from switchboard.actors.tools.knowledge import NO_PASSAGE_NOTE, SearchKnowledge, passages_of
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.errors import StorageError
from switchboard.orchestrator.knowledge_store import KnowledgeIndex
from switchboard.orchestrator.store import Store

EXAMPLE = load_agent_file(Path(__file__).resolve().parent.parent / "examples" / "receptionist.yaml")


class FakeIndex:
    """A knowledge index that answers after ``delay_s`` of the call's clock, or fails."""

    def __init__(self, passages: Sequence[Passage] = (), *, delay_s: float = 0.0) -> None:
        self.passages = list(passages)
        self.delay_s = delay_s
        self.error: Exception | None = None
        self.asked: list[tuple[UUID, UUID, str, int]] = []

    async def search(
        self, tenant_id: UUID, agent_id: UUID, query: str, limit: int
    ) -> Sequence[Passage]:
        self.asked.append((tenant_id, agent_id, query, limit))
        await trio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return self.passages[:limit]


class Events:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, type_: str, /, **payload: Any) -> None:
        self.emitted.append((type_, payload))


def invocation(
    arguments: dict[str, Any], tenant_id: UUID | None = None, agent_id: UUID | None = None
) -> ToolInvocation:
    return ToolInvocation(
        call_id="call_7",
        name="search_knowledge",
        arguments=arguments,
        session_id=uuid4(),
        tenant_id=tenant_id or uuid4(),
        agent_id=agent_id or uuid4(),
        tenant="demo",
        agent="receptionist",
    )


PASSAGES = [  # as the OR search finds them: each holds some words of the query
    Passage("faq.md", "Yes, behind the building.", 0.5, "Is there parking?", False),
    Passage("faq.md", "Bus 12 stops in front.", 0.25, "Buses", False),
    Passage("notes.txt", "Street parking is free after 6.", 0.125, "", False),
]


async def test_the_model_gets_the_best_passages_and_the_search_is_a_retrieval_event(
    autojump_clock: trio.abc.Clock,
) -> None:
    index, events = FakeIndex(PASSAGES, delay_s=0.25), Events()
    tool = SearchKnowledge(index, limit=2)
    call = invocation({"query": "  where can I\n park  "})
    outcome = await tool(call, events.emit)
    assert outcome.ok and outcome.error is None
    assert index.asked == [(call.tenant_id, call.agent_id, "where can I park", 2)]
    data = json.loads(outcome.output)
    assert data == {
        "query": "where can I park",
        "passages": [
            {
                "source": "faq.md",
                "heading": "Is there parking?",
                "text": "Yes, behind the building.",
                "score": 0.5,
                "every_word": False,
            },
            {
                "source": "faq.md",
                "heading": "Buses",
                "text": "Bus 12 stops in front.",
                "score": 0.25,
                "every_word": False,
            },
        ],
    }
    assert [p.text for p in passages_of(outcome.output)] == [
        "Yes, behind the building.",
        "Bus 12 stops in front.",
    ]
    assert events.emitted == [
        (
            "retrieval",
            {
                "call_id": "call_7",
                "query": "where can I park",
                "hits": [
                    {"source": "faq.md", "heading": "Is there parking?", "score": 0.5},
                    {"source": "faq.md", "heading": "Buses", "score": 0.25},
                ],
                "match": "some_words",
                "latency_ms": 250.0,
            },
        )
    ]


async def test_no_passage_tells_the_model_not_to_guess() -> None:
    events = Events()
    outcome = await SearchKnowledge(FakeIndex())(invocation({"query": "quartz"}), events.emit)
    assert outcome.ok
    assert json.loads(outcome.output) == {
        "query": "quartz",
        "passages": [],
        "note": NO_PASSAGE_NOTE,
    }
    assert passages_of(outcome.output) == []
    ((type_, payload),) = events.emitted
    assert type_ == "retrieval" and payload["hits"] == [] and "error" not in payload
    assert payload["match"] == "none"


async def test_an_index_that_fails_is_a_tool_error_and_a_retrieval_event_with_the_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    index, events = FakeIndex(delay_s=1.5), Events()
    index.error = StorageError("PostgreSQL is not reachable")
    outcome = await SearchKnowledge(index)(invocation({"query": "parking"}), events.emit)
    assert not outcome.ok and outcome.error == "unavailable"
    assert "cannot be searched" in outcome.output
    assert outcome.detail == {"reason": "StorageError"}
    assert events.emitted == [
        (
            "retrieval",
            {
                "call_id": "call_7",
                "query": "parking",
                "hits": [],
                "match": "none",
                "latency_ms": 1500.0,
                "error": "StorageError: PostgreSQL is not reachable",
            },
        )
    ]


async def test_a_missing_or_blank_query_is_an_argument_error_without_a_search() -> None:
    for arguments in ({}, {"query": "   "}, {"query": 42}):
        index, events = FakeIndex(PASSAGES), Events()
        outcome = await SearchKnowledge(index)(invocation(arguments), events.emit)
        assert not outcome.ok and outcome.error == "invalid_arguments"
        assert index.asked == []
        ((type_, payload),) = events.emitted
        assert type_ == "retrieval" and payload["error"] and payload["hits"] == []


def test_passages_of_other_text_is_empty() -> None:
    for text in ("", "not json", "[]", '{"passages": [{"text": "x"}]}', "checking that for you"):
        assert passages_of(text) == []


async def test_against_the_real_index_the_example_faq_answers(
    store: Store, database: Database
) -> None:
    agent_id = await trio.to_thread.run_sync(store.apply_agent, EXAMPLE)
    tenant_id = await trio.to_thread.run_sync(store.tenant_by_name, "demo")
    assert tenant_id is not None
    events = Events()
    tool = SearchKnowledge(KnowledgeIndex(database))
    outcome = await tool(
        invocation({"query": "do you take insurance"}, tenant_id, agent_id), events.emit
    )
    best = passages_of(outcome.output)[0]
    assert (best.source, best.heading) == ("knowledge/faq.md", "Do you take insurance?")
    assert best.text.startswith("Yes, we accept most major dental insurance plans")
    ((_, payload),) = events.emitted
    assert payload["hits"][0] == {
        "source": "knowledge/faq.md",
        "heading": "Do you take insurance?",
        "score": best.score,
    }
    assert payload["match"] == "all_words" and best.every_word
    assert payload["latency_ms"] >= 0


async def run_in_executor(kit: ToolKit, arguments: dict[str, Any]) -> tuple[ToolResult, list[str]]:
    """One ``search_knowledge`` call through the call's tool executor."""
    ctx = CallContext(uuid4(), uuid4(), uuid4(), EXAMPLE, t0=trio.current_time())
    to_tools, inbox = trio.open_memory_channel[ToTools](10)
    to_supervisor, results = trio.open_memory_channel[ToSupervisor](10)
    events_send, events = trio.open_memory_channel[CallEvent](100)
    executor = ToolExecutor(
        ctx, inbox=inbox, to_supervisor=to_supervisor, events=EventSink(ctx, events_send), kit=kit
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(executor.run)
        await to_tools.send(ToolCallRequested("c1", "search_knowledge", arguments, "r1"))
        result = await results.receive()
        await to_tools.aclose()
    assert isinstance(result, ToolResult)
    return result, [event.type async for event in events]  # the executor closed its sink


async def test_the_executor_runs_search_knowledge_with_the_calls_index() -> None:
    result, types = await run_in_executor(ToolKit(knowledge=FakeIndex(PASSAGES)), {"query": "park"})
    assert result.ok and passages_of(result.output)[0].heading == "Is there parking?"
    assert "retrieval" in types
    result, types = await run_in_executor(ToolKit(), {"query": "park"})
    assert not result.ok and "cannot be searched" in result.output
    assert "retrieval" not in types
    result, _ = await run_in_executor(ToolKit(knowledge=FakeIndex(PASSAGES)), {})
    assert not result.ok and "query" in result.output  # the tool's JSON Schema: query required
