"""Fault: PostgreSQL stops with a call in flight on each door, and comes back.

A dedicated embedded PostgreSQL (stopped and started again with its own
``pg_ctl``, on the same socket) and a real ``serve --workers 1`` process on it,
draining its spool every second (``SPOOL_DRAIN_INTERVAL_S=1``). A Twilio call,
a browser call and a ``/v1/realtime`` call are past their greetings when
PostgreSQL stops. While it is away ``/ready`` says ``database unreachable``,
the calls go on (the Twilio caller asks a question and hears the answer, the
browser and realtime calls still answer their callers' messages), and the
browser caller hangs up: its end waits in its journal. Once PostgreSQL is back,
every call is whole in it: events ``1..N`` once each with ``session.end`` last,
the ended call's rows exactly its journal, its ``call_logs`` row, its turns.
And SIGTERM while PostgreSQL is away: the server finishes its calls, exits 0
with their journals left, and its next start writes them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio
from fault_support import (
    assert_complete,
    browser_call,
    call_log,
    journal_events,
    poll,
    realtime_call,
    server_process,
    session_rows,
    twilio_call,
)

from switchboard.actors.local.tts import synthesize_ulaw
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres, start_embedded
from switchboard.orchestrator.journal import read_journal


@asynccontextmanager
async def dedicated_postgres() -> AsyncIterator[tuple[Path, list[EmbeddedPostgres]]]:
    """An embedded PostgreSQL of its own (a short path: its socket lives in it); the list
    holds the running handle (the test replaces it when it restarts the server)."""
    folder = Path(tempfile.mkdtemp(prefix="sb-pg-"))
    running = [await trio.to_thread.run_sync(start_embedded, folder)]
    try:
        yield folder, running
    finally:
        await trio.to_thread.run_sync(running[-1].stop)
        shutil.rmtree(folder, ignore_errors=True)


async def test_calls_on_every_door_outlive_a_postgres_outage_and_lose_nothing(
    tmp_path: Path,
) -> None:
    question = synthesize_ulaw("what are your opening hours")
    async with (
        dedicated_postgres() as (pg_folder, pg),
        server_process(tmp_path, pg[0].uri, SPOOL_DRAIN_INTERVAL_S="1") as server,
        AsyncExitStack() as calls,
    ):
        phone = await calls.enter_async_context(twilio_call(server))
        browser = await calls.enter_async_context(browser_call(server))
        realtime = await calls.enter_async_context(realtime_call(server))
        await phone.wait_greeting()
        await browser.wait_for(lambda m: m["event"] == "transcript" and m["role"] == "agent")
        await realtime.wait_for(lambda m: m["type"] == "response.done")
        sessions = [phone.session_id, browser.session_id, realtime.session_id]
        for session_id in sessions:  # some of each call is in PostgreSQL before the outage
            await poll(lambda s=session_id: session_rows(server, s), f"events of {session_id}")

        uri = pg[0].uri
        await trio.to_thread.run_sync(pg[0].stop)
        ready = await server.ready_when(503)
        assert ready.json() == {"status": "database unreachable"}

        # The calls go on without PostgreSQL.
        heard_before = phone.frames_heard
        assert await phone.ask(question) is not None, "no answer during the outage"
        assert phone.frames_heard > heard_before
        await browser.send({"event": "text", "text": "are you still there"})
        await browser.wait_for(  # the typed line is taken as the caller's turn
            lambda m: m["event"] == "transcript" and m["text"] == "are you still there"
        )
        await realtime.send({"type": "input_audio_buffer.clear"})
        await realtime.wait_for(lambda m: m["type"] == "input_audio_buffer.cleared")
        assert not (phone.phone.closed.is_set() or browser.closed.is_set())
        assert not realtime.closed.is_set()

        # The browser caller hangs up during the outage: its end waits in its journal.
        await browser.hang_up()
        journal = server.spool_dir / f"{browser.session_id}.jsonl"
        await poll(lambda: journal.exists() and read_journal(journal).end, "the journal's end")
        ended_in_outage = journal_events(journal)
        assert ended_in_outage[-1][1] == "session.end"
        assert [t for _, t in ended_in_outage].count("caller.text") == 1

        pg.append(await trio.to_thread.run_sync(start_embedded, pg_folder))
        assert pg[-1].uri == uri  # the same socket: the server's DATABASE_URL
        await server.ready_when(200)
        await phone.hang_up()
        await realtime.hang_up()

        for session_id in sessions:
            await poll(lambda s=session_id: call_log(server, s), f"call_logs of {session_id}")
        rows = {s: assert_complete(server, s) for s in sessions}
        assert rows[browser.session_id] == ended_in_outage
        assert call_log(server, browser.session_id) == "caller hung up"
        phone_types = [t for _, t in rows[phone.session_id]]
        assert phone_types.count("turn:user") == 1 and phone_types.count("turn:agent") == 2
        answers = server.rows(
            "select text from call_turns where session_id = %s and role = 'agent' order by seq",
            phone.session_id,
        )
        assert "Monday to Friday" in answers[-1][0]  # the answer given during the outage
        await poll(lambda: not server.journals(), "an empty spool folder")
        server.assert_no_traceback()


async def test_a_server_stopped_during_an_outage_leaves_its_journals_to_the_next_start(
    tmp_path: Path,
) -> None:
    """SIGTERM while PostgreSQL is away: the calls in flight go on until their callers hang
    up, the server exits 0 with their journals left in the spool folder (it cannot write
    them), and the next start, with PostgreSQL back, writes each exactly."""
    async with (
        dedicated_postgres() as (pg_folder, pg),
        server_process(tmp_path, pg[0].uri, SPOOL_DRAIN_INTERVAL_S="1") as server,
    ):
        async with twilio_call(server) as phone, realtime_call(server) as realtime:
            await phone.wait_greeting()
            await realtime.wait_for(lambda m: m["type"] == "response.done")
            await trio.to_thread.run_sync(pg[0].stop)
            await server.ready_when(503)
            server.terminate()
            assert (await server.ready_when(503)).json() == {"status": "draining"}
            await realtime.hang_up()
            await phone.hang_up()
        assert await server.wait() == 0
        assert "journals left for the next start" in server.log_text()
        journals = {p.stem: journal_events(p) for p in server.journals()}
        assert sorted(journals) == sorted([phone.session_id, realtime.session_id])
        for path in server.journals():
            assert read_journal(path).end is not None  # each call's end, with its events

        pg.append(await trio.to_thread.run_sync(start_embedded, pg_folder))
        for session_id in journals:  # PostgreSQL back, the server not yet: the ends are missing
            assert call_log(server, session_id) is None
            assert len(session_rows(server, session_id)) < len(journals[session_id])
        await server.start()
        for session_id, emitted in journals.items():
            await poll(lambda s=session_id: call_log(server, s), f"call_logs of {session_id}")
            assert assert_complete(server, session_id) == emitted
        assert call_log(server, phone.session_id) == "caller hung up"
        assert call_log(server, realtime.session_id) == "client closed the connection"
        await poll(lambda: not server.journals(), "an empty spool folder")
        server.assert_no_traceback()
