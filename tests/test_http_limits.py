"""HTTP request limits on a real server: a body over the limit is refused with 413, and
the connection it came on is either reused for the next request or closed, never hung."""

from __future__ import annotations

from pathlib import Path

import h11
import httpx
import pytest
import trio
from browser_support import Harness, start_harness

from switchboard.orchestrator.http_limits import DRAIN_MAX_BYTES, MAX_BODY_BYTES
from switchboard.orchestrator.store import Store


@pytest.fixture
async def h(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    return await start_harness(nursery, store, database_url, tmp_path, monkeypatch)


TOO_LARGE = {"error": f"the request body is over {MAX_BODY_BYTES} bytes"}


async def test_a_request_after_a_413_on_the_same_keep_alive_connection_is_answered(
    h: Harness,
) -> None:
    """Issue 11: the second request on the connection hung. Now a body the server can
    read is read and dropped, and the 413 leaves the connection open for the next one."""
    headers = {"Authorization": f"Bearer {h.api_key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=h.url) as client:
        with trio.fail_after(30):
            refused = await client.post(
                "/v1/sessions", content=b"x" * (3 * MAX_BODY_BYTES), headers=headers
            )
            assert refused.status_code == 413
            assert refused.json() == TOO_LARGE
            assert "connection" not in refused.headers
            health = await client.get("/health")
        assert health.status_code == 200
        assert health.extensions["network_stream"] is refused.extensions["network_stream"]


async def test_a_body_too_large_to_read_is_refused_at_once_and_its_connection_closed(
    h: Harness,
) -> None:
    """A declared body over the drain limit is not read: 413 with Connection: close,
    then the server closes the connection (before: it stayed open and answered nothing)."""
    host, port = h.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    conn = h11.Connection(h11.CLIENT)
    length = DRAIN_MAX_BYTES + 1
    request = h11.Request(
        method="POST",
        target="/v1/sessions",
        headers=[("Host", host), ("Content-Length", str(length))],
    )
    await stream.send_all(conn.send(request) + conn.send(h11.Data(data=b"x" * 65536)))
    events: list[object] = []
    with trio.fail_after(10):
        while not events or not isinstance(events[-1], h11.ConnectionClosed):
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            else:
                events.append(event)
    await stream.aclose()
    response = events[0]
    assert isinstance(response, h11.Response) and response.status_code == 413
    assert (b"connection", b"close") in response.headers
    body = b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data))
    assert body == b'{"error": "the request body is over 1048576 bytes"}'


async def test_a_chunked_body_over_the_limit_is_refused_and_its_connection_closed(
    h: Harness,
) -> None:
    """A body without a declared length is cut at the limit by Quart: 413, Connection:
    close, and the connection is closed (before: it stayed open and answered nothing)."""
    host, port = h.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target="/v1/sessions",
        headers=[
            ("Host", host),
            ("Transfer-Encoding", "chunked"),
            ("Authorization", f"Bearer {h.api_key}"),
        ],
    )

    async def upload() -> None:
        try:
            await stream.send_all(conn.send(request))
            for _ in range(2 * MAX_BODY_BYTES // 65536 + 1):
                await stream.send_all(conn.send(h11.Data(data=b"x" * 65536)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            pass  # the server answered and closed before the upload ended

    events: list[object] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(upload)
        with trio.fail_after(10):
            while not events or not isinstance(events[-1], h11.ConnectionClosed):
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                else:
                    events.append(event)
        nursery.cancel_scope.cancel()
    await stream.aclose()
    response = events[0]
    assert isinstance(response, h11.Response) and response.status_code == 413
    assert (b"connection", b"close") in response.headers
