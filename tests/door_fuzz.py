"""Shared by the door fuzz tests: a real server for the module, its log, and hostile frames.

The server is ``serve`` itself (hypercorn on 127.0.0.1, a fresh database of the
session's embedded PostgreSQL, the ``local`` provider), run in a thread of its
own with its own Trio loop, so that one server lives through every example of
a hypothesis test (pytest-trio would start a Trio run, and so a server, per
example). Test code runs in that loop too, through :meth:`LiveServer.run`.

:class:`LogWatch` records what a user of the server's log would call a crash:
anything logged at error level or with a traceback, by structlog or by the
standard library (hypercorn's "Error in ASGI Framework" is one), and events
that could not be written to PostgreSQL.

Import it as ``from door_fuzz import ...`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import structlog
import trio
import trio_websocket
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pg_support import fresh_database

from switchboard.orchestrator import devcreds
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres
from switchboard.orchestrator.server import example_agent_path, serve
from switchboard.orchestrator.store import Store

T = TypeVar("T")

CALL_DEADLINE_S = 60.0
"""A bound on anything a test waits for, so a hang fails instead of blocking CI: never
an assertion on speed."""

FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    # No shrinking: each example is a real call, and a failing one prints as it is.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Hypothesis settings of the door tests: each example is a real call (about 0.5 s)."""

_WRITE_PROBLEMS = ("event batch not written", "events spooled", "events lost")


# -- the server's log -------------------------------------------------------------------


class LogWatch(logging.Handler):
    """Lines of the server's log that show a crash or a lost event, in order."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.problems: list[str] = []
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:  # the standard library's
        if record.levelno >= logging.ERROR or record.exc_info:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            self._add(f"{record.name}: {text}")

    def structlog_processor(
        self, _logger: Any, method: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        message = str(event.get("event", ""))
        if (
            method in ("error", "critical", "exception", "fatal")
            or event.get("exc_info")
            or "exception" in event
            or message.startswith(_WRITE_PROBLEMS)
        ):
            self._add(f"{method}: {event!r}")
        return event

    def _add(self, line: str) -> None:
        with self._lock_:
            self.problems.append(line)

    def since(self, mark: int) -> list[str]:
        with self._lock_:
            return self.problems[mark:]

    def mark(self) -> int:
        with self._lock_:
            return len(self.problems)


@contextmanager
def watching_logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    old = structlog.get_config()
    structlog.configure(processors=[watch.structlog_processor, *old["processors"]])
    root = logging.getLogger()
    hypercorn_error = logging.getLogger("hypercorn.error")
    root.addHandler(watch)
    hypercorn_error.addHandler(watch)  # in case hypercorn stops it propagating
    try:
        yield watch
    finally:
        root.removeHandler(watch)
        hypercorn_error.removeHandler(watch)
        structlog.configure(**old)


# -- the server ----------------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    database_url: str
    api_key: str
    agent_id: str
    log: LogWatch
    _token: trio.lowlevel.TrioToken
    _nursery: trio.Nursery
    _stop: trio.Event
    background: list[BaseException] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` in the server's Trio loop (from the test's thread)."""

        async def bounded() -> T:
            with trio.fail_after(CALL_DEADLINE_S):
                return await fn(*args)

        return trio.from_thread.run(bounded, trio_token=self._token)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the background of the server's loop; a failure is kept in
        :attr:`background`."""

        async def guarded() -> None:
            try:
                await fn(*args)
            except Exception as exc:
                self.background.append(exc)

        trio.from_thread.run_sync(self._nursery.start_soon, guarded, trio_token=self._token)

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(query, args).fetchall()

    def events(self, session_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The session's logged events, ``(type, payload)`` in ``seq`` order."""
        return [
            (type_, payload)
            for type_, payload in self.rows(
                "select type, payload from call_events where session_id = %s order by seq",
                session_id,
            )
        ]

    async def ended(self, session_id: str, log_mark: int) -> list[tuple[str, dict[str, Any]]]:
        """The session's events once its ``session.end`` is written (waits, bounded).

        Raises:
            AssertionError: the server logged a problem since ``log_mark`` meanwhile.
        """
        with trio.fail_after(CALL_DEADLINE_S):
            while True:
                assert self.log.since(log_mark) == []
                events = await trio.to_thread.run_sync(self.events, session_id)
                if events and events[-1][0] == "session.end":
                    return events
                await trio.sleep(0.05)

    async def end_reason_logged(self, session_id: str) -> str:
        """The session's ``call_logs.end_reason`` once its row is written (waits, bounded)."""
        query = "select end_reason from call_logs where session_id = %s"
        with trio.fail_after(CALL_DEADLINE_S):
            while not (rows := await trio.to_thread.run_sync(self.rows, query, session_id)):
                await trio.sleep(0.05)
        return str(rows[0][0])


@contextmanager
def live_server(pg_server: EmbeddedPostgres, data_dir: Path) -> Iterator[LiveServer]:
    """``serve`` on a fresh database, in a thread, with its log watched.

    The example agent is applied first with a long idle timeout, so a witness call
    that stays silent through every example is not hung up on.
    """
    with fresh_database(pg_server, "fuzz") as database_url, watching_logs() as watch:
        with Database(database_url) as db:
            agent = replace(load_agent_file(example_agent_path()), idle_timeout_seconds=3600)
            agent_id = Store(db).apply_agent(agent)
        settings = Settings(
            host="127.0.0.1",
            port=0,
            data_dir=data_dir,
            database_url=database_url,
            twilio_auth_token="test-auth-token",
            playout_lead_ms=60_000,
            log_format="console",
            max_calls_per_worker=500,  # refused streams hold their reservation for 60 s
            max_local_calls_per_worker=500,
        )
        ready = threading.Event()
        box: dict[str, Any] = {}

        async def main() -> None:
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(serve, settings)
                box.update(
                    urls=urls, token=trio.lowlevel.current_trio_token(), stop=stop, nursery=nursery
                )
                ready.set()
                await stop.wait()
                nursery.cancel_scope.cancel()

        def thread() -> None:
            try:
                trio.run(main)
            except BaseException as exc:
                box["error"] = exc
            finally:
                ready.set()

        runner = threading.Thread(target=thread, name="fuzz-server", daemon=True)
        runner.start()
        ready.wait(CALL_DEADLINE_S)
        if "token" not in box:
            raise RuntimeError(f"the server did not start: {box.get('error')!r}")
        creds = devcreds.load(data_dir)
        assert creds is not None
        server = LiveServer(
            box["urls"][0],
            database_url,
            creds.api_key,
            str(agent_id),
            watch,
            box["token"],
            box["nursery"],
            box["stop"],
        )
        try:
            yield server
        finally:
            try:
                trio.from_thread.run_sync(server._stop.set, trio_token=server._token)
            except trio.RunFinishedError:
                pass
            runner.join(CALL_DEADLINE_S)
            if "error" in box:
                raise box["error"]


# -- hostile frames --------------------------------------------------------------------

HUGE_INTEGERS = st.sampled_from(
    [2**53 + 1, 2**63, -(2**63) - 1, 10**400, -(10**400), -1, 2**31, 2**32 + 7]
)
ODD_TEXT = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "\ud800",  # a lone surrogate (json.dumps writes it as an escape)
        "\udfff\ud800",
        "\u202e\u200f",  # right-to-left override, right-to-left mark
        "\ufeff",
        "\uffff",
        "\U0001d54a\U0001f399\ufe0f",  # outside the BMP, with a variation selector
        "\\",
        '"',
        "Ω" * 300,
        "x" * 5000,
    ]
)
NON_FINITE = st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -0.0, 5e-324])


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """Any JSON value, huge, negative and non-finite numbers and odd unicode included."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        HUGE_INTEGERS,
        st.floats(),
        NON_FINITE,
        st.text(max_size=20),
        ODD_TEXT,
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(max_size=8), children, max_size=3),
        ),
        max_leaves=max_leaves,
    )


def dumps(value: Any) -> str:
    """JSON text as a sloppy peer writes it: ``NaN``/``Infinity`` allowed, non-ASCII raw."""
    return json.dumps(value, allow_nan=True)


def nested(depth: int, kind: str) -> str:
    """A message with an unknown field nested ``depth`` deep (parsers must walk it)."""
    if kind == "list":
        inner = "[" * depth + "]" * depth
    elif kind == "object":
        inner = '{"a":' * depth + "1" + "}" * depth
    else:
        inner = "[" * depth  # unterminated
    return '{"event":"audio","type":"session.update","x":' + inner + "}"


def raw_frames(cap_chars: int) -> st.SearchStrategy[str | bytes]:
    """Frames that are not a message of any protocol, or not one the size cap lets in."""
    return st.one_of(
        st.binary(max_size=64),  # binary on a text protocol
        st.just(b""),
        st.just(""),
        st.text(max_size=64),
        st.sampled_from(["{", "}", "[]", "null", "1", '"event"', "{}", "NaN", "-Infinity"]),
        st.integers(min_value=100, max_value=200).map(lambda n: "9" * n * 2),
        st.tuples(
            st.sampled_from([1000, 10_000, 100_000]), st.sampled_from(["list", "object", "open"])
        ).map(lambda t: nested(*t)),
        st.sampled_from([cap_chars - 64, cap_chars + 1, cap_chars + 4096]).map(
            lambda n: '{"event":"' + "x" * max(0, n - 12) + '"}'
        ),
        st.just(b'{"event": "\xff\xfe"}'),  # not UTF-8
    )


_DELETE = object()


@st.composite
def mutated(
    draw: st.DrawFn,
    valid: dict[str, Any],
    paths: dict[tuple[str, ...], st.SearchStrategy[Any]],
    max_changes: int = 2,
) -> str:
    """``valid`` as JSON text with up to ``max_changes`` of its ``paths`` changed: to a value
    of the path's own strategy, to any JSON value, or deleted."""
    message = json.loads(json.dumps(valid))
    chosen = draw(st.lists(st.sampled_from(sorted(paths)), max_size=max_changes, unique=True))
    for path in chosen:
        value = draw(st.one_of(paths[path], json_values(), st.just(_DELETE)))
        parent = message
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if value is _DELETE:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    return dumps(message)


# -- a peer's side of one connection ----------------------------------------------------------


@dataclass
class Peer:
    """What a test client received on one WebSocket (JSON messages), and how it closed."""

    received: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    _changed: trio.Event = field(default_factory=trio.Event)

    async def listen(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Receive until the connection closes (run it in a nursery)."""
        try:
            while True:
                self.received.append(json.loads(await ws.get_message()))
                self._changed.set()
                self._changed = trio.Event()
        except trio_websocket.ConnectionClosed as closed:
            self.closed(closed)
        finally:
            self._changed.set()

    def closed(self, closed: trio_websocket.ConnectionClosed) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = closed.reason.code, closed.reason.reason or ""

    async def until(self, predicate: Callable[[], object]) -> None:
        """Wait until ``predicate()`` is true or the connection has closed."""
        while not predicate() and self.close_code is None:
            await self._changed.wait()


# -- the witness and the test -----------------------------------------------------------------


@dataclass
class Witness:
    """A valid call of the door, open through every example: greeted first, asked the
    opening hours last (:meth:`talk` does both, waiting on :attr:`go` in between)."""

    server: LiveServer
    go: trio.Event = field(default_factory=trio.Event)
    greeted: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    answer: str | None = None

    async def call(self) -> None:
        try:
            await self.talk()
        finally:
            self.greeted.set()
            self.done.set()

    async def talk(self) -> None:
        raise NotImplementedError

    async def finish(self) -> None:
        self.go.set()
        await self.done.wait()


def fuzz_the_door(
    server: LiveServer,
    witness: Witness,
    streams: st.SearchStrategy[T],
    explicit: T,
    one_call: Callable[[T], None],
) -> None:
    """Run ``one_call`` on examples of ``streams`` (``explicit`` first) while ``witness``
    is on a call, then ask the witness's question; the server must log no problem."""
    server.start_soon(witness.call)
    server.run(witness.greeted.wait)

    @FUZZ_SETTINGS
    @given(stream=streams)
    @example(stream=explicit)
    def each(stream: T) -> None:
        mark = server.log.mark()
        one_call(stream)
        assert server.log.since(mark) == []

    each()
    server.run(witness.finish)
    assert server.background == []
    assert witness.answer and "Monday to Friday" in witness.answer, witness.answer
    assert server.log.problems == []
