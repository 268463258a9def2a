"""The must-show of issue 15's post-call hooks: the receiver is down, the runtime is
restarted meanwhile, the receiver comes back, and each webhook arrives exactly once.

A real ``serve --workers 1`` process (the post-call loop runs in its parent process)
on the session's embedded PostgreSQL takes a real practice-page call; the tenant's
receiver (a real HTTP server on loopback, verifying signatures with
``standardwebhooks``) is not listening at first. The server is stopped and started
again on the same database while the deliveries keep failing; then the receiver
listens, and gets ``call.ended`` and ``call.analyzed`` once each, with the
``webhook-id`` the outbox gave them before the restart.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import trio
from fault_support import browser_call, call_log, poll, server_process
from tool_servers import BusinessServer

from switchboard.orchestrator.db import Database
from switchboard.orchestrator.tenant_tools import set_tool_allowlist
from switchboard.orchestrator.webhook_subscriptions import add_subscription

FAST_RETRIES = {
    "POST_CALL_POLL_S": "0.1",
    "WEBHOOK_RETRY_BASE_S": "0.2",
    "WEBHOOK_RETRY_CAP_S": "0.5",
    "WEBHOOK_TIMEOUT_S": "2",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_webhook_is_delivered_once_after_the_receiver_and_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()  # where the receiver will listen, once it is back
    async with server_process(tmp_path, database_url, **FAST_RETRIES) as server:
        [(tenant_id,)] = server.rows("SELECT id FROM tenants WHERE name = 'demo'")
        with Database(database_url) as db:
            set_tool_allowlist(db, tenant_id, ["127.0.0.1"])
            _, secret = add_subscription(db, tenant_id, f"http://127.0.0.1:{port}/hooks")

        async with browser_call(server) as call:  # a real call, hung up after the greeting
            await call.wait_for(lambda m: m["event"] == "transcript" and m["role"] == "agent")
        session = call.session_id
        await poll(lambda: call_log(server, session), "the call's call_logs row")

        def outbox() -> list[tuple[Any, ...]]:
            return server.rows(
                "SELECT event_type, id, state, attempts, last_error FROM webhook_outbox"
                " WHERE session_id = %s ORDER BY event_type",
                session,
            )

        # Both events queued and tried; the receiver is down, so each failed.
        await poll(
            lambda: len(rows := outbox()) == 2 and all(r[3] >= 1 for r in rows),
            "both webhooks tried while the receiver is down",
        )
        before = outbox()
        assert [r[0] for r in before] == ["call.analyzed", "call.ended"]
        assert all(r[2] == "pending" and r[4] for r in before), before  # connect refused
        ids = {r[0]: r[1] for r in before}

        await server.stop()  # the runtime restarts while the receiver is still down
        attempts_at_stop = {r[0]: r[3] for r in outbox()}
        await server.start()
        await poll(
            lambda: all(r[3] > attempts_at_stop[r[0]] for r in outbox()),
            "the restarted runtime trying again",
        )

        receiver = BusinessServer(secret=secret, port=port)  # the receiver comes back
        async with trio.open_nursery() as nursery:
            await nursery.start(receiver.run)
            await poll(
                lambda: all(r[2] == "delivered" for r in outbox()), "both webhooks delivered"
            )
            await server.stop()  # nothing may come after: no runtime is left to send it
            nursery.cancel_scope.cancel()

    after = outbox()
    assert [r[2] for r in after] == ["delivered", "delivered"]
    got = sorted((r.json()["type"], r.headers["webhook-id"]) for r in receiver.requests)
    assert got == sorted(ids.items())  # each event once, with its id from before the restart
    assert all(r.signature_ok is True for r in receiver.requests)  # standardwebhooks verified
    [analyzed] = [r.json() for r in receiver.requests if r.json()["type"] == "call.analyzed"]
    assert analyzed["data"]["call_id"] == session
    assert analyzed["data"]["summary"]["analysis"]["outcome"] in ("completed", "no_conversation")
    assert analyzed["data"]["summary"]["analyser"] == "local"
