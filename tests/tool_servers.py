"""Fake tool servers for webhook and edge-function tests, on real loopback sockets.

Reusable by any test that runs tools over the network (the tool executor's,
an end-to-end phone call's):

- :class:`BusinessServer`: the business's HTTP (or HTTPS) endpoint. It
  records every request, checks a Standard Webhooks signature
  (``standardwebhooks``) and an edge-function token (pyjwt) when told the
  secret, and answers by the last segment of the path: ``tool`` JSON
  (``answer``), and the hostile behaviours ``slow-drip`` (one byte every
  100 ms for 10 s), ``huge`` (50 MiB, streamed, no length announced),
  ``huge-declared`` (50 MiB announced, then a stall), ``redirect`` (302 to
  ``redirect_to``), ``not-json``, ``error`` (HTTP 500 with a JSON error),
  ``gzip`` (a compressed answer nobody asked for), ``empty`` (204). Serve it
  with :func:`start_business`.
- :class:`CanaryServer`: a TCP server on an address the SSRF rules refuse
  (``127.0.0.2`` by default). Any connection to it is recorded; a test that
  ends with ``canary.connections == []`` proves nothing reached it.
- :class:`FakeResolver`: maps test host names to addresses, counts lookups,
  and can answer differently from the second lookup on (DNS rebinding).
- :class:`RecordingBackend`: httpcore's Trio backend, recording every TCP
  connection the client opens (``GuardedHttp(network_backend=...)``).

Everything runs inside the test's own Trio run, so the MockClock's virtual time
covers the servers' sleeps too.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
import httpcore
import jwt
import trio
from standardwebhooks import Webhook

DRIP_INTERVAL_S = 0.1
DRIP_BYTES = 100  # one byte every 100 ms: 10 s in all
HUGE_BYTES = 50 * 1024 * 1024


@dataclass
class RecordedRequest:
    """A request as the business received it (headers with lower-case names)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None = None  # None: no secret given, or no webhook-signature header
    claims: dict[str, Any] | None = None  # the verified edge-function token's claims
    token_error: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class BusinessServer:
    """The business's endpoint (see the module docstring): HTTP/1.1 on a raw Trio
    TCP server (requests parsed with h11, answers written byte by byte, one
    request per connection), so a hostile answer is exactly what it says.

    Attributes:
        secret: the tenant's ``whsec_`` secret: webhook signatures are verified
            with ``Webhook(secret).verify(body, headers)``.
        jwt_key: the edge-function token key: tokens are verified with pyjwt
            (HS256, audience ``edge-functions``, issuer ``switchboard``).
        answer: the JSON ``/tool`` answers with.
        redirect_to: where ``/redirect`` points.
        host, port: where it listens (port 0: a free one; set once started).
        tls: a server-side TLS context (HTTPS); ``sni`` lists the names clients sent.
    """

    secret: str | None = None
    jwt_key: bytes | None = None
    answer: Any = field(default_factory=lambda: {"booked": True, "table": 12})
    redirect_to: str = "http://127.0.0.2/"
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    tls: ssl.SSLContext | None = None
    sni: list[str | None] = field(default_factory=list)
    dripped: int = 0  # bytes of /slow-drip sent
    huge_sent: int = 0  # bytes of /huge sent

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``started()`` with the port."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        if self.tls is not None:
            self.tls.sni_callback = self._saw_sni
        task_status.started(self.port)
        await trio.serve_listeners(self._serve, listeners)

    def _saw_sni(self, _obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.sni.append(name)

    async def _serve(self, tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        if self.tls is not None:
            stream = trio.SSLStream(tcp, self.tls, server_side=True)
        async with stream:
            try:
                request = await _read_request(stream)
                if request is None:
                    return
                self.requests.append(self._verified(request))
                await self._answer(stream, request.path.rstrip("/").rsplit("/", 1)[-1])
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
                pass  # the client went away (past its cap, or refusing our certificate)

    async def _answer(self, stream: trio.abc.Stream, route: str) -> None:
        if route == "slow-drip":
            body = b'{"pad":"' + b"x" * (DRIP_BYTES - 10) + b'"}'
            await stream.send_all(_head(200, _JSON, len(body)))
            for byte in body:
                await trio.sleep(DRIP_INTERVAL_S)
                await stream.send_all(bytes([byte]))
                self.dripped += 1
        elif route == "huge":  # no length announced: the body ends when the connection does
            await stream.send_all(_head(200, _JSON, None) + b"[")
            chunk = b"0," * (512 * 1024)
            while self.huge_sent < HUGE_BYTES:
                await stream.send_all(chunk)
                self.huge_sent += len(chunk)
        elif route == "huge-declared":  # 50 MiB announced, then nothing more for ever
            await stream.send_all(_head(200, _JSON, HUGE_BYTES) + b"[")
            await trio.sleep_forever()
        elif route == "redirect":
            await stream.send_all(_head(302, {"location": self.redirect_to}, 0))
        elif route == "not-json":
            await _send(stream, 200, {"content-type": "text/html"}, b"<html>ok")
        elif route == "error":
            await _send(stream, 500, _JSON, b'{"error":"database down"}')
        elif route == "gzip":
            body = gzip.compress(json.dumps(self.answer).encode())
            await _send(stream, 200, {**_JSON, "content-encoding": "gzip"}, body)
        elif route == "empty":
            await stream.send_all(_head(204, {}, None))
        else:
            await _send(stream, 200, _JSON, json.dumps(self.answer).encode())

    def _verified(self, recorded: RecordedRequest) -> RecordedRequest:
        headers = recorded.headers
        if self.secret is not None and "webhook-signature" in headers:
            try:
                Webhook(self.secret).verify(recorded.body, headers)
                recorded.signature_ok = True
            except Exception:
                recorded.signature_ok = False
        auth = headers.get("authorization", "")
        if self.jwt_key is not None and auth.startswith("Bearer "):
            try:
                recorded.claims = jwt.decode(
                    auth.removeprefix("Bearer "),
                    self.jwt_key,
                    algorithms=["HS256"],
                    audience="edge-functions",
                    issuer="switchboard",
                )
            except jwt.InvalidTokenError as exc:
                recorded.token_error = str(exc)
        return recorded


_JSON = {"content-type": "application/json"}
_REASONS = {200: "OK", 204: "No Content", 302: "Found", 500: "Internal Server Error"}


def _head(status: int, headers: Mapping[str, str], length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _send(
    stream: trio.abc.Stream, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    await stream.send_all(_head(status, headers, len(body)) + body)


async def _read_request(stream: trio.abc.Stream) -> RecordedRequest | None:
    """One request, parsed by h11 (None when the client sent nothing)."""
    conn = h11.Connection(h11.SERVER)
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data and head is None:
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            headers = {k.decode().lower(): v.decode() for k, v in head.headers}
            path = head.target.decode().split("?", 1)[0]
            return RecordedRequest(head.method.decode(), path, headers, bytes(body))
        else:
            return None


async def start_business(nursery: trio.Nursery, server: BusinessServer) -> tuple[str, int]:
    """Serve ``server`` in ``nursery``; its base URL and port."""
    await nursery.start(server.run)
    return server.url, server.port


@dataclass
class CanaryServer:
    """Records every TCP connection to ``host:port`` and answers HTTP 200 JSON.

    If a guarded request ever reaches it, the tool would seem to succeed and
    ``connections`` holds the peer: a test asserts it stays empty.
    """

    host: str = "127.0.0.2"
    port: int = 0
    connections: list[tuple[str, int]] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``started()`` with the port."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, stream: trio.SocketStream) -> None:
        peer = stream.socket.getpeername()
        self.connections.append((str(peer[0]), int(peer[1])))
        async with stream:
            try:
                with trio.move_on_after(1):
                    self.received += await stream.receive_some(65536)
                body = b'{"canary":"reached"}'
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                    + body
                )
            except trio.BrokenResourceError:
                pass


async def start_canary(
    nursery: trio.Nursery, host: str = "127.0.0.2", port: int = 0
) -> CanaryServer:
    """A :class:`CanaryServer` listening on ``host:port`` (port 0: a free one)."""
    canary = CanaryServer(host, port)
    await nursery.start(canary.run)
    return canary


class FakeResolver:
    """Test host names to addresses (a :class:`~switchboard.actors.tools.guarded_http.Resolver`).

    ``table[host]`` answers the first lookup of ``host``; ``rebind[host]``, when
    given, answers every later one (a name that changes between check and
    connect). An unknown host raises ``socket.gaierror`` as the system does.
    ``lookups`` lists every host asked, in order.
    """

    def __init__(
        self,
        table: Mapping[str, Sequence[str]],
        *,
        rebind: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.table = dict(table)
        self.rebind = dict(rebind or {})
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        await trio.lowlevel.checkpoint()
        seen = self.lookups.count(host)
        self.lookups.append(host)
        if seen and host in self.rebind:
            return list(self.rebind[host])
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.table[host])


class RecordingBackend(httpcore.TrioBackend):
    """httpcore's Trio backend, recording ``(host, port)`` of every TCP connect."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)
