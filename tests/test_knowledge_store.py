"""The knowledge index in the real PostgreSQL: indexed by ``agent apply``, searched with
full-text search, ranked, and never shown to another tenant."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from uuid import UUID

import pytest
import trio

from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.agents import AgentSpec, KnowledgeSource
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.errors import ConfigError, StorageError
from switchboard.orchestrator.knowledge_store import KnowledgeIndex, any_words
from switchboard.orchestrator.store import Store

EXAMPLE = load_agent_file(Path(__file__).resolve().parent.parent / "examples" / "receptionist.yaml")


def agent(
    name: str, tenant: str, *docs: tuple[str, str], numbers: tuple[str, ...] = ()
) -> AgentSpec:
    return AgentSpec(
        name=name,
        tenant=tenant,
        greeting="Hello.",
        intents=(),
        phone_numbers=numbers,
        knowledge=tuple(KnowledgeSource(s, t) for s, t in docs),
    )


def applied_example(store: Store) -> tuple[UUID, UUID]:
    """The example receptionist applied: (tenant id, agent id)."""
    agent_id = store.apply_agent(EXAMPLE)
    tenant_id = store.tenant_by_name(EXAMPLE.tenant)
    assert tenant_id is not None
    return tenant_id, agent_id


def test_the_example_faq_answers_spoken_questions_best_first(
    store: Store, database: Database
) -> None:
    tenant_id, agent_id = applied_example(store)
    index = KnowledgeIndex(database)
    for question, heading in [
        ("Do you take insurance", "Do you take insurance?"),
        ("do you accept my Aetna plan", "Do you take insurance?"),  # some words only: the OR
        ("is there somewhere to park my car", "Is there parking?"),
        ("how much is a cleaning", "How much is a teeth cleaning?"),
        ("can I pay with a credit card", "Do you offer financing?"),
        ("where is your office located", "Where are you located?"),
    ]:
        hits = index.search_sync(tenant_id, agent_id, question, 3)
        assert hits, question
        assert hits[0].heading == heading, (question, hits)
        assert hits[0].source == "knowledge/faq.md"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert all(h.score > 0 for h in hits)
    insurance = index.search_sync(tenant_id, agent_id, "Do you take insurance", 1)
    assert len(insurance) == 1 and insurance[0].text.startswith("Yes, we accept most major")
    assert insurance[0].every_word
    some = index.search_sync(tenant_id, agent_id, "parking for my bicycle", 3)
    assert some[0].heading == "Is there parking?"
    assert not any(p.every_word for p in some)  # none mentions a bicycle: the OR found them


def test_a_query_with_nothing_to_match_finds_nothing_and_operators_are_words(
    store: Store, database: Database
) -> None:
    tenant_id, agent_id = applied_example(store)
    index = KnowledgeIndex(database)
    assert index.search_sync(tenant_id, agent_id, "xylophone quartz", 3) == []
    assert index.search_sync(tenant_id, agent_id, "  ?! ", 3) == []
    assert index.search_sync(tenant_id, agent_id, "the and of", 3) == []  # stop words only
    hostile = "insurance' | !( & <-> :* \\ \"parking"
    assert any_words(hostile) == "insurance | parking"
    headings = {h.heading for h in index.search_sync(tenant_id, agent_id, hostile, 5)}
    assert {"Do you take insurance?", "Is there parking?"} <= headings
    with pytest.raises(ValueError, match="limit"):
        index.search_sync(tenant_id, agent_id, "parking", 0)


def test_applying_the_agent_again_replaces_its_chunks(store: Store, database: Database) -> None:
    first = agent("desk", "acme", ("a.md", "## Is there parking?\n\nBehind the building."))
    agent_id = store.apply_agent(first)
    tenant_id = store.tenant_by_name("acme")
    assert tenant_id is not None
    index = KnowledgeIndex(database)
    assert [h.text for h in index.search_sync(tenant_id, agent_id, "parking", 3)] == [
        "Behind the building."
    ]
    second = replace(first, knowledge=(KnowledgeSource("b.md", "Parking is on Oak Lane."),))
    assert store.apply_agent(second) == agent_id
    assert [(h.source, h.text) for h in index.search_sync(tenant_id, agent_id, "parking", 3)] == [
        ("b.md", "Parking is on Oak Lane.")
    ]
    store.apply_agent(replace(second, knowledge=()))
    assert index.search_sync(tenant_id, agent_id, "parking", 3) == []


def test_a_refused_apply_keeps_the_old_chunks(store: Store, database: Database) -> None:
    store.apply_agent(agent("other", "globex", numbers=("+15550001111",)))
    mine = agent("desk", "acme", ("a.md", "Parking behind the building."))
    agent_id = store.apply_agent(mine)
    tenant_id = store.tenant_by_name("acme")
    assert tenant_id is not None
    changed = replace(
        mine,
        phone_numbers=("+15550001111",),  # another tenant's: the apply is refused
        knowledge=(KnowledgeSource("b.md", "Parking on Oak Lane."),),
    )
    with pytest.raises(ConfigError):
        store.apply_agent(changed)
    hits = KnowledgeIndex(database).search_sync(tenant_id, agent_id, "parking", 3)
    assert [h.text for h in hits] == ["Parking behind the building."]


def test_one_tenant_never_sees_another_tenants_chunks(store: Store, database: Database) -> None:
    secret = "The vault code is in the blue binder."
    theirs = store.apply_agent(agent("desk", "globex", ("vault.md", secret)))
    mine = store.apply_agent(agent("desk", "acme", ("open.md", "Our vault is a museum piece.")))
    acme, globex = store.tenant_by_name("acme"), store.tenant_by_name("globex")
    assert acme is not None and globex is not None
    index = KnowledgeIndex(database)
    assert [h.text for h in index.search_sync(globex, theirs, "vault code", 3)] == [secret]
    # acme asking with globex's agent id: row-level security hides the rows
    assert index.search_sync(acme, theirs, "vault code", 3) == []
    with database.tenant(acme) as cur:
        cur.execute("SELECT body FROM knowledge_chunks")
        assert [r[0] for r in cur.fetchall()] == ["Our vault is a museum piece."]
        cur.execute("SELECT count(*) FROM knowledge_chunks WHERE agent_id = %s", (theirs,))
        assert cur.fetchone() == (0,)
    with database.anonymous() as cur:  # no tenant: nothing at all
        cur.execute("SELECT count(*) FROM knowledge_chunks")
        assert cur.fetchone() == (0,)
    assert mine != theirs


def test_a_tenant_cannot_write_chunks_for_another_tenant(store: Store, database: Database) -> None:
    theirs = store.apply_agent(agent("desk", "globex", ("a.md", "Theirs.")))
    acme = store.ensure_tenant("acme")
    globex = store.tenant_by_name("globex")
    with pytest.raises(StorageError, match="row-level security"), database.tenant(acme) as cur:
        cur.execute(
            "INSERT INTO knowledge_chunks (tenant_id, agent_id, position, source, body)"
            " VALUES (%s, %s, 99, 'x.md', 'planted')",
            (globex, theirs),
        )
    assert globex is not None
    assert KnowledgeIndex(database).search_sync(globex, theirs, "planted", 3) == []


async def test_the_async_search_runs_the_query_in_a_worker_thread(
    store: Store, database: Database
) -> None:
    agent_id = await trio.to_thread.run_sync(store.apply_agent, EXAMPLE)
    tenant_id = await trio.to_thread.run_sync(store.tenant_by_name, "demo")
    assert tenant_id is not None
    threads: list[str] = []

    async def run_sync(fn, *args):  # type: ignore[no-untyped-def]
        threads.append("worker")
        return await trio.to_thread.run_sync(fn, *args)

    index = KnowledgeIndex(database, run_sync=run_sync)
    hits = await index.search(tenant_id, agent_id, "whitening", 2)
    assert threads == ["worker"]
    assert hits[0].heading == "Do you offer teeth whitening?"
