"""Fault: SIGTERM with a Twilio call in flight, and a new call on each door while draining.

A real ``serve --workers 1`` process on the session's embedded PostgreSQL. After
SIGTERM, ``/ready`` says ``draining``; a new Twilio call gets TwiML without a
``<Connect><Stream>``, a new browser session and call and a new ``/v1/realtime``
call get 503 with ``Retry-After``; the call in flight goes on (the caller asks
a question and hears the answer) until the caller hangs up; then the server
exits 0 with the call whole in PostgreSQL and nothing left in its spool folder.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
import trio_websocket
from fault_support import (
    assert_complete,
    call_log,
    realtime_call,
    server_process,
    twilio_call,
    twiml_verbs,
)

from switchboard.actors.local.tts import synthesize_ulaw


async def test_sigterm_refuses_new_calls_on_every_door_and_finishes_the_call_in_flight(
    database_url: str, tmp_path: Path
) -> None:
    question = synthesize_ulaw("what are your opening hours")
    async with server_process(tmp_path, database_url) as server:
        made_before = await server.new_session()  # a browser token from before the SIGTERM
        assert made_before.status_code == 201, made_before.text
        async with twilio_call(server) as call:
            await call.wait_greeting()
            server.terminate()
            ready = await server.ready_when(503)
            assert (ready.status_code, ready.json()) == (503, {"status": "draining"})

            refused = await server.webhook()
            assert refused.status_code == 200, refused.text
            assert "Connect" not in twiml_verbs(refused), refused.text  # no stream is admitted
            assert "Say" in twiml_verbs(refused)  # the agent's when_busy message

            session = await server.new_session()
            assert session.status_code == 503, session.text  # (no Retry-After on main yet)
            url = f"{server.ws_url}/v1/voice?token={made_before.json()['token']}"
            with pytest.raises(trio_websocket.ConnectionRejected) as caught:
                async with trio_websocket.open_websocket_url(url):
                    pass
            assert caught.value.status_code == 503
            assert dict(caught.value.headers or []).get(b"retry-after"), caught.value.headers
            with pytest.raises(trio_websocket.ConnectionRejected) as caught:
                async with realtime_call(server):
                    pass
            assert caught.value.status_code == 503
            assert dict(caught.value.headers or []).get(b"retry-after"), caught.value.headers

            # The call in flight goes on: the caller is answered.
            heard_before = call.frames_heard
            assert await call.ask(question) is not None, "no answer while draining"
            assert call.frames_heard > heard_before
            assert server.process is not None and server.process.returncode is None
        # The caller hung up: the server finishes draining and exits.
        assert await server.wait() == 0
        assert call_log(server, call.session_id) == "caller hung up"
        types = [t for _, t in assert_complete(server, call.session_id)]
        assert types.count("turn:user") == 1 and types.count("turn:agent") == 2
        assert not server.journals()
        server.assert_no_traceback()


async def test_ctrl_c_drains_like_sigterm_and_a_second_ctrl_c_stops_at_once(
    database_url: str, tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT) in the terminal: the server drains (the call in flight holds it
    up); a second Ctrl-C stops it at once. Neither prints a traceback."""
    async with server_process(tmp_path, database_url) as server:
        assert server.process is not None
        async with twilio_call(server) as call:
            await call.wait_greeting()
            server.process.send_signal(signal.SIGINT)
            ready = await server.ready_when(503)
            assert ready.json() == {"status": "draining"}
            await trio.sleep(1.0)
            assert server.process.returncode is None  # held up by the call in flight
            server.process.send_signal(signal.SIGINT)
            assert await server.wait(timeout_s=30) == 0
        log = server.log_text()
        assert "KeyboardInterrupt" not in log
        server.assert_no_traceback()
