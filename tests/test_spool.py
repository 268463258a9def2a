"""Call journals (issue 11): what PostgreSQL did not take comes back once, and a call whose
server died is closed as "server lost", its events gapless and its call_logs row written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import psycopg
import trio

from switchboard.actors.context import CallContext
from switchboard.actors.event_logger import EventLogger
from switchboard.actors.messages import CallEvent
from switchboard.orchestrator import spool
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.journal import CallEnd, CallJournal, read_journal
from switchboard.orchestrator.store import EventRow, Store

AGENT_YAML = (
    "name: front-desk\ntenant: acme\ngreeting: hi\nphone_numbers: ['+15005550100']\n"
    "intents:\n  - name: bye\n    phrases: [bye]\n    reply: bye\n"
)
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def unreachable(rows: Sequence[EventRow]) -> None:
    raise ConnectionError("PostgreSQL is away")


def new_session(store: Store) -> tuple[UUID, UUID, CallContext]:
    agent = parse_agent_yaml(AGENT_YAML)
    agent_id = store.apply_agent(agent)
    tenant_id = store.ensure_tenant("acme")
    session_id = store.create_session(tenant_id, agent_id, transport="twilio")
    ctx = CallContext(session_id, tenant_id, agent_id, agent, t0=0.0)
    return tenant_id, session_id, ctx


def row(seq: int, type_: str, **payload: object) -> EventRow:
    return EventRow(seq, type_, T0 + timedelta(seconds=seq), seq * 1000.0, payload)


def ended(database_url: str, session_id: UUID) -> tuple[object, ...] | None:
    with psycopg.connect(database_url) as owner:
        return owner.execute(
            "SELECT s.status, l.end_reason, l.turns FROM voice_sessions s"
            " JOIN call_logs l ON l.session_id = s.id WHERE s.id = %s",
            (session_id,),
        ).fetchone()


async def test_a_call_that_ends_while_postgresql_is_away_is_written_back_once(
    store: Store, database_url: str, tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    tenant_id, session_id, ctx = new_session(store)
    journal = CallJournal(tmp_path, tenant_id, session_id, T0)
    send, receive = trio.open_memory_channel[CallEvent](100)
    logger = EventLogger(
        ctx, inbox=receive, write_batch=unreachable, on_logged=journal.append, final_attempts=1
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(logger.run)
        async with send:
            await send.send(CallEvent("session.start", 0.0, {}))
            await send.send(CallEvent("turn:user", 5.0, {"text": "bye"}))
            await send.send(CallEvent("session.end", 9.0, {"reason": "caller hung up"}))
    assert logger.unwritten == 3
    journal.finish(CallEnd("caller hung up", 1, T0, T0 + timedelta(seconds=9)))
    journal.close(keep=True)
    assert store.read_events(tenant_id, session_id) == []

    assert spool.drain(store, tmp_path) == 3
    events = store.read_events(tenant_id, session_id)
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "session.start"),
        (2, "turn:user"),
        (3, "session.end"),
    ]
    assert [t.text for t in store.read_turns(tenant_id, session_id)] == ["bye"]
    assert ended(database_url, session_id) == ("ended", "caller hung up", 1)
    assert list(tmp_path.iterdir()) == []
    assert spool.drain(store, tmp_path) == 0  # nothing left, nothing duplicated
    assert len(store.read_events(tenant_id, session_id)) == 3


def test_a_live_calls_journal_is_left_alone(store: Store, tmp_path: Path) -> None:
    tenant_id, session_id, _ = new_session(store)
    journal = CallJournal(tmp_path, tenant_id, session_id, T0)
    journal.append(row(1, "session.start"))
    assert spool.drain(store, tmp_path) == 0  # locked by its call
    assert store.read_events(tenant_id, session_id) == []
    journal.close(keep=False)
    assert list(tmp_path.iterdir()) == []


def test_a_call_whose_server_died_is_closed_as_server_lost(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    tenant_id, session_id, _ = new_session(store)
    journal = CallJournal(tmp_path, tenant_id, session_id, T0)
    journal.append(row(1, "session.start"))
    journal.append(row(2, "response.done", turns_completed=0, greeting=True))
    journal.append(row(3, "turn:user", text="what are your hours"))
    journal.append(row(4, "response.done", turns_completed=1, greeting=False))
    store.append_events(tenant_id, session_id, [row(1, "session.start")])  # one batch was in
    journal.close(keep=True)  # the process dies: no end line, the lock goes with it
    with (tmp_path / f"{session_id}.jsonl").open("a") as f:
        f.write('{"tenant_id": "' + str(tenant_id) + '", "seq": 5, "ty')  # cut mid-write

    assert read_journal(tmp_path / f"{session_id}.jsonl").torn_tail
    assert spool.drain(store, tmp_path) == 5
    events = store.read_events(tenant_id, session_id)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]  # gapless, no duplicate
    assert events[-1]["type"] == "session.end"
    assert events[-1]["payload"] == {
        "reason": "server lost",
        "turns_completed": 1,
        "duration_ms": 4000.0,
    }
    assert ended(database_url, session_id) == ("ended", "server lost", 1)
    assert list(tmp_path.iterdir()) == []


def test_a_spool_file_of_the_previous_release_is_still_written_back(
    store: Store, tmp_path: Path
) -> None:
    tenant_id, session_id, _ = new_session(store)
    ids = {"tenant_id": str(tenant_id), "session_id": str(session_id)}
    lines = [
        {**ids, "seq": 1, "type": "session.start", "ts": T0.isoformat(), "t_ms": 0, "payload": {}},
        {**ids, "seq": 2, "type": "session.end", "ts": T0.isoformat(), "t_ms": 9, "payload": {}},
    ]
    (tmp_path / f"{session_id}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert spool.drain(store, tmp_path) == 2
    assert [e["seq"] for e in store.read_events(tenant_id, session_id)] == [1, 2]


def test_an_unreadable_journal_is_kept_not_lost(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text("{not json\n{}\n")
    assert spool.drain(store, tmp_path) == 0
    assert bad.exists()
