"""Browser calls: ``WS /v1/voice`` and ``WS /app/voice/stream/{session_id}``.

The handshake is checked before ``accept``: admission control first (a
draining or full server answers 503 with ``Retry-After``, see
:mod:`.admission`; the token's ``mode`` says whether the call is local-first),
then a bad ``?sample_rate=`` is 400 and a bad token 401 or 403
(:mod:`.ws_auth`), and nothing is opened, written or started for the call. An admitted call runs
:func:`~switchboard.orchestrator.call.run_call` with a
:class:`~switchboard.actors.browser_transport.BrowserTransport`, the agent's
fallback chain led by the token's ``mode``, and the caller's audio format
PCM16 at the stated rate.

The page's transcript and timeline come from the call's recorded events,
read back as the event logger writes them (every ``EVENT_POLL_S``): the
call's event sink has no second reader yet.
"""

from __future__ import annotations

from functools import partial

import structlog
import trio

from switchboard.actors.browser_transport import BrowserTransport
from switchboard.actors.context import AudioFormat, CallContext, EventSink
from switchboard.actors.messages import CallEvent, HearCaller, ToSupervisor, ToTransport
from switchboard.codecs import browser_protocol as wire

from .admission import Refused
from .asgi_ws import AsgiWebSocket
from .call import run_call
from .errors import StorageError
from .runtime import Runtime
from .store import Store
from .ws_auth import Rejected, check_handshake, peek_claims

log = structlog.get_logger("switchboard.browser")

EVENT_POLL_S = 0.25
STREAM_PREFIX = "/app/voice/stream/"


async def browser_call(ws: AsgiWebSocket, rt: Runtime, *, session_id: str | None = None) -> None:
    """One browser call: admit it, check the handshake, then run the call on the socket."""
    door = "browser.stream" if session_id is not None else "browser.voice"
    peeked = peek_claims(ws.headers, ws.query, keyring=rt.keyring, issuer=rt.settings.token_issuer)
    ticket = rt.admission.start_call(door, local=peeked is not None and peeked.mode == "local")
    if isinstance(ticket, Refused):
        await ws.reject(503, ticket.message, retry_after_s=ticket.retry_after_s)
        return
    with ticket:
        await _admitted(ws, rt, door, session_id)


async def _admitted(ws: AsgiWebSocket, rt: Runtime, door: str, session_id: str | None) -> None:
    try:
        rates = ws.query.get("sample_rate")
        rate = wire.parse_sample_rate(rates[-1] if rates else None)
    except wire.BrowserProtocolError as exc:
        await ws.reject(400, exc.detail)
        return
    result = await check_handshake(
        ws.headers,
        ws.query,
        keyring=rt.keyring,
        issuer=rt.settings.token_issuer,
        store=rt.store,
        door=door,
        session_id=session_id,
    )
    if isinstance(result, Rejected):
        await ws.reject(result.status, result.reason)
        return
    claims = result.claims
    from .server import with_mode_first  # server imports the app, which imports this

    agent = await trio.to_thread.run_sync(rt.store.get_agent, claims.tenant_id, claims.agent_id)
    if agent.mode != claims.mode:
        agent = with_mode_first(agent, claims.mode)
    await ws.accept(result.subprotocol)
    if ws.closed:
        return
    await trio.to_thread.run_sync(
        partial(rt.store.mark_session, claims.tenant_id, claims.session_id, status="active")
    )
    ctx = CallContext(
        session_id=claims.session_id,
        tenant_id=claims.tenant_id,
        agent_id=claims.agent_id,
        agent=agent,
        t0=trio.current_time(),
        caller_format=AudioFormat("pcm16", rate),
        extra={
            "transport": "browser",
            "conversation_id": claims.conversation_id,
            "test_mode": claims.test_mode,
        },
    )
    feed_send, feed_receive = trio.open_memory_channel[CallEvent](256)

    def make_transport(
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        hear: HearCaller,
        events: EventSink,
    ) -> BrowserTransport:
        return BrowserTransport(
            ctx,
            socket=ws,
            inbox=inbox,
            to_supervisor=to_supervisor,
            hear=hear,
            events=events,
            call_events=feed_receive,
            playout_lead_ms=rt.settings.playout_lead_ms,
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed_call_events, rt.store, ctx, feed_send)
        await run_call(ctx, make_transport, rt.resources)
        nursery.cancel_scope.cancel()


async def feed_call_events(
    store: Store, ctx: CallContext, out: trio.MemorySendChannel[CallEvent]
) -> None:
    """Send the call's events to ``out`` as they are written, in order, until cancelled.

    While PostgreSQL cannot be read (:class:`StorageError`) the page's event feed
    waits and the call goes on; the feed resumes from the last event it sent.
    """
    last_seq = -1
    unreadable = False
    async with out:
        while True:
            await trio.sleep(EVENT_POLL_S)
            try:
                rows = await trio.to_thread.run_sync(
                    partial(store.read_events, ctx.tenant_id, ctx.session_id, after_seq=last_seq)
                )
            except StorageError as exc:
                if not unreadable:  # once per outage
                    log.warning("call events unreadable; the page's feed waits", error=str(exc))
                unreadable = True
                continue
            unreadable = False
            for row in rows:
                last_seq = max(last_seq, row["seq"])
                try:
                    out.send_nowait(CallEvent(row["type"], row["t_ms"], row["payload"]))
                except trio.WouldBlock:
                    log.warning("page too slow for the call's events; one dropped")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
