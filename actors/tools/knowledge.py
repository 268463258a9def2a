"""The builtin ``search_knowledge`` tool: the agent's documents, searched for the caller.

:class:`SearchKnowledge` searches the call's agent's knowledge (a
:class:`~.invocation.KnowledgeSearch`: the orchestrator's PostgreSQL full-text
index) for ``arguments["query"]`` and gives the model the best passages as
JSON text::

    {"query": "do you take insurance",
     "passages": [{"source": "knowledge/faq.md", "heading": "Do you take insurance?",
                   "text": "Yes. We accept most ...", "score": 0.4, "every_word": true}]}

(``every_word``: the passage holds every word of the query, not only some.)

With no passage, ``passages`` is empty and ``note`` tells the model to say it
does not know rather than guess. :func:`passages_of` reads that text back (the
local provider speaks the best passage from it).

Every search is one ``retrieval`` event: ``call_id``, ``query``, ``hits``
(``[{source, heading, score}]``, best first), ``match`` (``all_words``,
``some_words`` when only the OR search found them, ``none``), ``latency_ms``
(on the call's clock), and ``error`` when it failed. A failure is a
:class:`~.invocation.ToolOutcome` error (``invalid_arguments`` for a missing or
blank query, ``unavailable`` when the index cannot be searched), never an
exception.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, final

import structlog
import trio

from .invocation import KnowledgeSearch, Passage, ToolInvocation, ToolOutcome

__all__ = ["DEFAULT_LIMIT", "NO_PASSAGE_NOTE", "Emit", "SearchKnowledge", "passages_of"]

log = structlog.get_logger("switchboard.tools.knowledge")

DEFAULT_LIMIT: Final = 3
"""Passages given to the model per search."""
NO_PASSAGE_NOTE: Final = (
    "Nothing in the business's documents matches. Say you don't know, do not guess."
)
MAX_QUERY_CHARS: Final = 500
"""A longer query is cut here (in the search and in the event)."""


class Emit(Protocol):
    """``await emit(type_, **payload)``: log one call event (the executor's ``EventSink.emit``)."""

    def __call__(self, type_: str, **payload: Any) -> Awaitable[object]: ...


@final
@dataclass(frozen=True, slots=True)
class FoundPassage:
    """A passage as the tool's output carries it."""

    source: str
    heading: str
    text: str
    score: float
    every_word: bool


@final
class SearchKnowledge:
    """Runs ``search_knowledge`` for one call's tool calls.

    Args:
        search: the knowledge index.
        limit: the most passages given to the model (1 or more).
    """

    def __init__(self, search: KnowledgeSearch, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.search = search
        self.limit = limit

    async def __call__(self, invocation: ToolInvocation, emit: Emit) -> ToolOutcome:
        """Search for ``invocation.arguments["query"]``; one ``retrieval`` event, then the
        outcome (the passages as JSON text, or an error the model can act on)."""
        query = invocation.arguments.get("query")
        started = trio.current_time()
        if not isinstance(query, str) or not query.strip():
            error = "the query must be a non-empty string"
            await self._emit(emit, invocation, "", [], started, error)
            return ToolOutcome.failed(
                "invalid_arguments", f"search_knowledge needs a query: {error}."
            )
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        try:
            found = await self.search.search(
                invocation.tenant_id, invocation.agent_id, query, self.limit
            )
        except Exception as exc:  # the index's failure is the tool's result, never a crash
            log.warning("knowledge search failed", error=repr(exc))
            await self._emit(emit, invocation, query, [], started, f"{type(exc).__name__}: {exc}")
            return ToolOutcome.failed(
                "unavailable",
                "The documents cannot be searched right now. Tell the caller you cannot"
                " look that up at the moment.",
                reason=type(exc).__name__,
            )
        passages = list(found)[: self.limit]
        await self._emit(emit, invocation, query, passages, started, None)
        output: dict[str, Any] = {
            "query": query,
            "passages": [
                {
                    "source": p.source,
                    "heading": p.heading,
                    "text": p.text,
                    "score": _score(p),
                    "every_word": p.every_word,
                }
                for p in passages
            ],
        }
        if not passages:
            output["note"] = NO_PASSAGE_NOTE
        return ToolOutcome(True, json.dumps(output, ensure_ascii=False))

    async def _emit(
        self,
        emit: Emit,
        invocation: ToolInvocation,
        query: str,
        passages: Sequence[Passage],
        started: float,
        error: str | None,
    ) -> None:
        payload: dict[str, Any] = {
            "call_id": invocation.call_id,
            "query": query,
            "hits": [
                {"source": p.source, "heading": p.heading, "score": _score(p)} for p in passages
            ],
            "match": _match(passages),
            "latency_ms": round((trio.current_time() - started) * 1000, 1),
        }
        if error is not None:
            payload["error"] = error
        await emit("retrieval", **payload)


def _match(passages: Sequence[Passage]) -> str:
    if not passages:
        return "none"
    return "all_words" if all(p.every_word for p in passages) else "some_words"


def _score(passage: Passage) -> float:
    return round(passage.score, 6)


def passages_of(output: str) -> list[FoundPassage]:
    """The passages in a ``search_knowledge`` output, best first ([] for any other text)."""
    try:
        data = json.loads(output)
        return [
            FoundPassage(
                str(p["source"]),
                str(p["heading"]),
                str(p["text"]),
                float(p["score"]),
                bool(p.get("every_word", True)),
            )
            for p in data["passages"]
        ]
    except (ValueError, TypeError, KeyError):
        return []
