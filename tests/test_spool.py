"""Events spooled while PostgreSQL was away come back, once, when it returns."""

from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import trio

from switchboard.actors.context import CallContext
from switchboard.actors.event_logger import EventLogger
from switchboard.actors.messages import CallEvent
from switchboard.orchestrator import spool
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.store import EventRow, Store

AGENT_YAML = (
    "name: front-desk\ntenant: acme\ngreeting: hi\nphone_numbers: ['+15005550100']\n"
    "intents:\n  - name: bye\n    phrases: [bye]\n    reply: bye\n"
)


def unreachable(rows: Sequence[EventRow]) -> None:
    raise ConnectionError("PostgreSQL is away")


async def test_spooled_events_are_written_back_once(
    store: Store, tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    agent = parse_agent_yaml(AGENT_YAML)
    agent_id = store.apply_agent(agent)
    tenant_id = store.ensure_tenant("acme")
    session_id = store.create_session(tenant_id, agent_id, transport="twilio")
    ctx = CallContext(session_id, tenant_id, agent_id, agent, t0=trio.current_time())

    send, receive = trio.open_memory_channel[CallEvent](100)
    logger = EventLogger(
        ctx, inbox=receive, write_batch=unreachable, spool_dir=tmp_path, final_attempts=1
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(logger.run)
        async with send:
            await send.send(CallEvent("session.start", 0.0, {}))
            await send.send(CallEvent("turn:user", 5.0, {"text": "bye"}))
            await send.send(CallEvent("session.end", 9.0, {"reason": "caller hung up"}))
    assert logger.spooled == 3
    assert store.read_events(tenant_id, session_id) == []

    assert spool.drain(store, tmp_path) == 3
    events = store.read_events(tenant_id, session_id)
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "session.start"),
        (2, "turn:user"),
        (3, "session.end"),
    ]
    assert [t.text for t in store.read_turns(tenant_id, session_id)] == ["bye"]
    assert list(tmp_path.iterdir()) == []
    assert spool.drain(store, tmp_path) == 0  # nothing left, nothing duplicated
    assert len(store.read_events(tenant_id, session_id)) == 3
    assert isinstance(session_id, UUID)


def test_an_unreadable_spool_file_is_kept_not_lost(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text("{not json\n")
    assert spool.drain(store, tmp_path) == 0
    assert bad.exists()
