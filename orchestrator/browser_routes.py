"""Browser calls: ``WS /v1/voice`` and ``WS /app/voice/stream/{session_id}``.

The handshake is checked before ``accept``: admission control first (a
draining or full server answers 503 with ``Retry-After``, see
:mod:`.admission`; the token's ``mode`` says whether the call is local-first),
then a bad ``?sample_rate=`` is 400 and a bad token 401 or 403
(:mod:`.ws_auth`), a database that cannot answer 503 with ``Retry-After``
(:mod:`.outage`), and nothing is opened, written or started for the call. An admitted call runs
:func:`~switchboard.orchestrator.call.run_call` with a
:class:`~switchboard.actors.browser_transport.BrowserTransport`, the agent's
fallback chain :func:`.call_chain.chain_for_session` chooses, and the caller's audio format
PCM16 at the stated rate.

The page's transcript and timeline come from the call's own event stream
(:class:`PageFeed`, fed by the event logger as it numbers each event), never
from PostgreSQL: a call whose database is away still shows the page its
events.
"""

from __future__ import annotations

from functools import partial
from typing import Final

import structlog
import trio

from switchboard.actors.browser_transport import PAGE_EVENTS, BrowserTransport
from switchboard.actors.context import AudioFormat, CallContext, EventSink
from switchboard.actors.messages import CallEvent, HearCaller, ToSupervisor, ToTransport
from switchboard.codecs import browser_protocol as wire

from .admission import Refused, Ticket
from .asgi_ws import AsgiWebSocket
from .call import run_call
from .call_chain import chain_for_session
from .errors import StorageError
from .outage import OUTAGE_REASON, RETRY_AFTER_DATABASE_S, refuse
from .recording import with_recording
from .runtime import Runtime
from .store import EventRow
from .ws_auth import Rejected, check_handshake, peek_claims

log = structlog.get_logger("switchboard.browser")

FEED_SIZE: Final = 256
"""Events the page may fall behind by before the newest are dropped (a few minutes of
transcript: only the types the page shows are queued)."""
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
        await _admitted(ws, rt, door, session_id, ticket)


async def _admitted(
    ws: AsgiWebSocket, rt: Runtime, door: str, session_id: str | None, ticket: Ticket
) -> None:
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
        if result.cause is not None:  # the database could not answer
            refuse(rt.admission.metrics, door, result.cause)
            await ws.reject(503, OUTAGE_REASON, retry_after_s=RETRY_AFTER_DATABASE_S)
        else:
            await ws.reject(result.status, result.reason)
        return
    claims = result.claims
    try:
        agent = await trio.to_thread.run_sync(rt.store.get_agent, claims.tenant_id, claims.agent_id)
    except StorageError as exc:
        refuse(rt.admission.metrics, door, exc)
        await ws.reject(503, OUTAGE_REASON, retry_after_s=RETRY_AFTER_DATABASE_S)
        return
    chosen = chain_for_session(agent, claims, rt.configured_chain())
    agent = chosen.agent
    if chosen.local_first:  # the chain's head changed since the session was made
        refused = ticket.make_local()
        if refused is not None:
            await ws.reject(503, refused.message, retry_after_s=refused.retry_after_s)
            return
    await ws.accept(result.subprotocol)
    if ws.closed:
        return
    try:
        await trio.to_thread.run_sync(
            partial(rt.store.mark_session, claims.tenant_id, claims.session_id, status="active")
        )
    except StorageError as exc:  # admitted: the call goes on, its events spool
        log.warning("session not marked active; the call goes on", error=str(exc)[:300])
    ctx = CallContext(  # the caller's state is unknown: consent is announced (auto)
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
            "mode_source": chosen.source,
        },
    )
    ctx = with_recording(ctx, rt.resources.recordings)
    feed = PageFeed()

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
            call_events=feed.events,
            playout_lead_ms=rt.settings.playout_lead_ms,
        )

    with feed:
        await run_call(ctx, make_transport, rt.resources, on_logged=feed.on_logged, door=door)


class PageFeed:
    """The call's events that the page shows, taken from the event logger as it numbers
    them (``run_call(on_logged=feed.on_logged)``), for the transport to read from
    :attr:`events`.

    :meth:`on_logged` never waits, since it runs in the event logger's task: when the
    page has fallen ``size`` events behind (its socket does not take what is sent), the
    newest are dropped, counted in :attr:`dropped`, with one warning per stretch of
    drops. Leaving the ``with`` block closes the feed; the transport's reader ends.
    """

    def __init__(self, size: int = FEED_SIZE) -> None:
        self._send, self.events = trio.open_memory_channel[CallEvent](size)
        self.dropped = 0
        self._behind = False

    def on_logged(self, row: EventRow) -> None:
        """Queue ``row`` for the page if the page shows its type; never blocks."""
        if row.type not in PAGE_EVENTS:
            return
        try:
            self._send.send_nowait(CallEvent(row.type, row.t_ms, row.payload))
        except trio.WouldBlock:
            self.dropped += 1
            if not self._behind:
                log.warning("page too slow for the call's events; dropping", seq=row.seq)
            self._behind = True
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the page's reader is gone: nothing to show it
        self._behind = False

    def __enter__(self) -> PageFeed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._send.close()
        if self.dropped:
            log.warning("events the page never saw", dropped=self.dropped)
