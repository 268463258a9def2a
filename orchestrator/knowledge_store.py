"""The knowledge index in PostgreSQL: an agent's chunks, and full-text search over them.

Table ``knowledge_chunks`` (migration 0006): one row per chunk
(:mod:`.knowledge`), with a generated English ``tsvector`` of its heading
(weight A) and body (weight B) under a GIN index, row-level secured by tenant.

- :func:`replace_chunks` re-indexes an agent inside the caller's transaction
  (:meth:`.store.Store.apply_agent` calls it with the spec's own transaction).
- :class:`KnowledgeIndex` searches: first ``websearch_to_tsquery('english', q)``
  (every word must match, as a search box does); when that finds nothing, the
  query's words OR-ed (a spoken question rarely matches every word); ranked by
  ``ts_rank_cd`` (cover density, PostgreSQL's default weights: A 1.0, B 0.4).
  Its :meth:`KnowledgeIndex.search` implements
  :class:`switchboard.actors.tools.invocation.KnowledgeSearch`, running the
  blocking query with ``run_sync`` (``trio.to_thread.run_sync`` by default).

Errors: :class:`~.errors.StorageError` for anything PostgreSQL refuses or
fails (from :class:`~.db.Database`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, final
from uuid import UUID

import trio

from ..actors.tools.invocation import Passage
from .knowledge import Chunk

if TYPE_CHECKING:
    from .db import Cursor, Database

__all__ = ["MAX_QUERY_WORDS", "MAX_RESULTS", "KnowledgeIndex", "any_words", "replace_chunks"]

MAX_RESULTS: Final = 20
"""The most passages one search returns."""
MAX_QUERY_WORDS: Final = 32
"""Words of a query beyond these are ignored (a question, not a document)."""

_WORD: Final = re.compile(r"[^\W_]+")

_SEARCH: Final = """
SELECT source, heading, body, ts_rank_cd(search, query) AS score
FROM knowledge_chunks, {query} AS query
WHERE agent_id = %(agent_id)s AND search @@ query
ORDER BY score DESC, position
LIMIT %(limit)s
"""
_ALL_WORDS: Final = _SEARCH.format(query="websearch_to_tsquery('english', %(q)s)")
_ANY_WORD: Final = _SEARCH.format(query="to_tsquery('english', %(q)s)")

RunSync = Callable[..., Awaitable[Any]]


def any_words(query: str) -> str:
    """``query``'s words (letters and digits) joined by ``|``: a ``to_tsquery`` text that
    matches any of them ("" when there are none). Only word characters pass, so
    nothing in ``query`` is read as a tsquery operator."""
    return " | ".join(_WORD.findall(query)[:MAX_QUERY_WORDS])


def replace_chunks(cur: Cursor, tenant_id: UUID, agent_id: UUID, chunks: Sequence[Chunk]) -> None:
    """Make ``chunks`` the agent's whole index, inside the caller's transaction ``cur``
    (a tenant transaction of ``tenant_id``)."""
    cur.execute("DELETE FROM knowledge_chunks WHERE agent_id = %s", (agent_id,))
    if chunks:
        cur.executemany(
            "INSERT INTO knowledge_chunks (tenant_id, agent_id, position, source, heading, body)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(tenant_id, agent_id, c.position, c.source, c.heading, c.text) for c in chunks],
        )


@final
class KnowledgeIndex:
    """Searches agents' knowledge in PostgreSQL (see the module docstring).

    Args:
        db: the pool (tenant transactions: a tenant's search sees its rows only).
        run_sync: how the blocking query runs from Trio (a worker thread by default).
    """

    def __init__(self, db: Database, *, run_sync: RunSync = trio.to_thread.run_sync) -> None:
        self.db = db
        self._run_sync = run_sync

    async def search(
        self, tenant_id: UUID, agent_id: UUID, query: str, limit: int
    ) -> Sequence[Passage]:
        """The best ``limit`` passages for ``query``, best first (see :meth:`search_sync`)."""
        found: list[Passage] = await self._run_sync(
            self.search_sync, tenant_id, agent_id, query, limit
        )
        return found

    def search_sync(self, tenant_id: UUID, agent_id: UUID, query: str, limit: int) -> list[Passage]:
        """The best ``limit`` (1 to :data:`MAX_RESULTS`) passages of the tenant's agent for
        ``query``, best first (``every_word`` False when only the OR search found them);
        empty for a query with no searchable word, an agent with
        no knowledge, or another tenant's agent. Blocking.

        Raises:
            ValueError: ``limit`` is out of range.
            StorageError: PostgreSQL failed.
        """
        if not 1 <= limit <= MAX_RESULTS:
            raise ValueError(f"limit must be 1 to {MAX_RESULTS}, got {limit}")
        words = any_words(query)
        if not words:
            return []
        with self.db.tenant(tenant_id) as cur:
            params = {"agent_id": agent_id, "limit": limit, "q": query}
            cur.execute(_ALL_WORDS, params)
            rows = cur.fetchall()
            every_word = bool(rows)
            if not rows:
                cur.execute(_ANY_WORD, params | {"q": words})
                rows = cur.fetchall()
        return [
            Passage(source, body, float(score), heading, every_word)
            for source, heading, body, score in rows
        ]
