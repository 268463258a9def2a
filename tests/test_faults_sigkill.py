"""Fault: the server is SIGKILLed with a call in flight on each door, then started again.

A real ``serve --workers 1`` process on the session's embedded PostgreSQL; a
Twilio Media Streams call, a browser call and a ``/v1/realtime`` call are past
their greetings when the process is killed. What the calls emitted is what their
journals in the spool folder hold at that moment; after the restart every one
of those events is in PostgreSQL exactly once, followed by the ``session.end``
"server lost" the drainer adds, and each session is ended with its
``call_logs`` row.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from fault_support import (
    assert_complete,
    browser_call,
    call_log,
    journal_events,
    poll,
    realtime_call,
    server_process,
    twilio_call,
)

from switchboard.orchestrator.spool import SERVER_LOST


async def test_a_sigkill_loses_no_event_and_every_call_is_closed_as_server_lost(
    database_url: str, tmp_path: Path
) -> None:
    async with server_process(tmp_path, database_url) as server:
        async with AsyncExitStack() as calls:
            phone = await calls.enter_async_context(twilio_call(server))
            browser = await calls.enter_async_context(browser_call(server))
            realtime = await calls.enter_async_context(realtime_call(server))
            await phone.wait_greeting()
            await browser.wait_for(lambda m: m["event"] == "transcript" and m["role"] == "agent")
            await realtime.wait_for(lambda m: m["type"] == "response.done")
            sessions = [phone.session_id, browser.session_id, realtime.session_id]

            server.kill()
            assert await server.wait() == -9
            journals = {p.stem: journal_events(p) for p in server.journals()}
        assert sorted(journals) == sorted(sessions)
        for emitted in journals.values():
            assert emitted[0] == (1, "session.start") and len(emitted) > 2, emitted
            assert "session.end" not in [t for _, t in emitted]  # the calls were in flight

        await server.start()  # same data folder, same database
        for session_id in sessions:
            await poll(lambda s=session_id: call_log(server, s), f"call_logs of {session_id}")
        for session_id in sessions:
            rows = assert_complete(server, session_id)
            emitted = journals[session_id]
            assert rows == [*emitted, (len(emitted) + 1, "session.end")], session_id
            assert call_log(server, session_id) == SERVER_LOST
        await poll(lambda: not server.journals(), "an empty spool folder")
        response = await server.get("/ready")
        assert response.status_code == 200, response.text
        server.assert_no_traceback()
