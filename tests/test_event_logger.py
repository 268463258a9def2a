"""The event logger: order, no gaps, no loss when the database is away."""

import threading
from collections.abc import Callable, Sequence
from uuid import uuid4

import trio
import trio.testing

from switchboard.actors.context import CallContext
from switchboard.actors.event_logger import EventLogger
from switchboard.actors.messages import CallEvent
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.store import EventRow

AGENT = parse_agent_yaml(
    "name: t\ntenant: t\ngreeting: hi\n"
    "intents:\n  - name: bye\n    phrases: [bye]\n    reply: bye\n"
)


def context() -> CallContext:
    return CallContext(uuid4(), uuid4(), uuid4(), AGENT, t0=trio.current_time())


class FlakyDatabase:
    """Fails the first ``failures`` writes, then stores rows (idempotently, like the table)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.rows: dict[int, EventRow] = {}
        self.calls = 0
        self.lock = threading.Lock()

    def write(self, rows: Sequence[EventRow]) -> None:
        with self.lock:
            self.calls += 1
            if self.failures:
                self.failures -= 1
                raise ConnectionError("PostgreSQL is away")
            for row in rows:
                self.rows.setdefault(row.seq, row)


async def log_events(
    db: FlakyDatabase,
    n: int,
    on_unwritten: Callable[[Sequence[EventRow]], None] | None = None,
    on_written: Callable[[Sequence[EventRow]], None] | None = None,
    **kw: float,
) -> EventLogger:
    ctx = context()
    send, receive = trio.open_memory_channel[CallEvent](4096)
    logger = EventLogger(
        ctx,
        inbox=receive,
        write_batch=db.write,
        on_unwritten=on_unwritten,
        on_written=on_written,
        **kw,  # type: ignore[arg-type]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(logger.run)
        async with send:
            for i in range(n):
                await send.send(CallEvent(f"e{i}", ctx.now_ms(), {"i": i, "id": uuid4()}))
    return logger


async def test_events_get_consecutive_seq_in_arrival_order() -> None:
    db = FlakyDatabase()
    await log_events(db, 250, batch_max=100)
    assert sorted(db.rows) == list(range(1, 251))
    assert [db.rows[s].payload["i"] for s in range(1, 251)] == list(range(250))
    assert db.calls >= 3  # written in batches of at most 100


async def test_a_database_outage_delays_events_but_loses_none(
    autojump_clock: trio.abc.Clock,
) -> None:
    db = FlakyDatabase(failures=4)
    logger = await log_events(db, 30, final_attempts=5)
    assert sorted(db.rows) == list(range(1, 31))
    assert logger.unwritten == 0


async def test_events_the_database_never_takes_are_handed_over_at_the_end(
    autojump_clock: trio.abc.Clock,
) -> None:
    db = FlakyDatabase(failures=10_000)
    handed: list[EventRow] = []
    logger = await log_events(db, 12, handed.extend, final_attempts=2)
    assert db.rows == {}
    assert [r.seq for r in handed] == list(range(1, 13))
    assert logger.unwritten == 12


async def test_a_slow_database_never_blocks_the_senders() -> None:
    release = threading.Event()

    def slow_write(rows: Sequence[EventRow]) -> None:
        release.wait(5)

    ctx = context()
    send, receive = trio.open_memory_channel[CallEvent](8)  # far fewer slots than events
    logger = EventLogger(ctx, inbox=receive, write_batch=slow_write, flush_interval_s=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(logger.run)
        with trio.fail_after(2):  # 500 events pass an 8-slot channel while the DB hangs
            for i in range(500):
                await send.send(CallEvent("e", float(i)))
        await trio.testing.wait_all_tasks_blocked()
        assert logger.last_seq == 500
        release.set()
        await send.aclose()


async def test_each_committed_batch_is_reported_once_and_a_failed_one_never(
    autojump_clock: trio.abc.Clock,
) -> None:
    db = FlakyDatabase(failures=2)
    committed: list[list[int]] = []
    await log_events(
        db, 30, on_written=lambda rows: committed.append([r.seq for r in rows]), batch_max=10
    )
    assert sorted(s for batch in committed for s in batch) == list(range(1, 31))
    assert all(len(batch) <= 10 for batch in committed)
