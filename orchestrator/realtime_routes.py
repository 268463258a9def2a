"""``WS /v1/realtime``: the OpenAI Realtime-compatible door.

Any OpenAI Realtime client (the official SDKs with their WebSocket base URL
pointed at ``ws://HOST:PORT/v1``) talks to the runtime as if it were the
provider; :class:`~switchboard.actors.realtime_transport.RealtimeTransport`
is its side of the call, and the usual call core (supervisor, provider with
failover, tools, event log) answers it.

Authentication, before ``accept`` and before anything is created:
``Authorization: Bearer <credential>``, where the credential is

- a tenant API key (``sb_...``): the tenant is the key's; the agent is the
  ``?agent_id=`` query parameter, an agent's id or name, which must be one of the
  tenant's agents; a new ``realtime`` session row is created for the call;
- a session token (from ``POST /v1/sessions``): checked by the
  ``check_token`` seam (the shared handshake check: signature, claims, jti
  consumption); the agent is the token's ``agent_id`` (a ``?agent_id=`` that
  differs is refused) and the session is the token's.

Admission control comes first (:mod:`.admission`): a draining or full
server answers 503 with ``Retry-After`` before the credential is looked at;
a call whose agent's first provider is ``local`` also needs a local-call slot,
checked once the agent is known (a session token is spent by then).
A refusal is an HTTP 401/403 (400 for a missing or overlong ``agent_id``)
with a short reason and one ``auth.rejected`` log line; nothing else happens.
While PostgreSQL is away the handshake is refused with 503 and ``Retry-After``
(:mod:`.outage`).
``OpenAI-Beta: realtime=v1`` selects the beta event names. ``?model=`` is
echoed back, not used: the call's chain decides (:mod:`.call_chain`: a session
token's ``mode`` or ``test_mode``, else the runtime configuration's chain, else the
agent's own).

After ``accept`` the server sends ``session.created``, then reads the
client's first event (at most :data:`FIRST_EVENT_TIMEOUT_S`) to fix the
call's audio format (:func:`~switchboard.actors.realtime_transport.call_format`),
and only then starts the call, so the agent's greeting is in that format.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal
from uuid import UUID

import structlog
import trio

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.messages import HearCaller, ToSupervisor, ToTransport
from switchboard.actors.realtime_session import call_format, caller_format, session_in_effect
from switchboard.actors.realtime_transport import RealtimeTransport
from switchboard.codecs import openai_realtime as wire

from .admission import Refused
from .agents import AgentSpec
from .asgi_ws import AsgiWebSocket
from .call import run_call
from .call_chain import ChosenChain, chain_for_call, chain_for_session
from .errors import StorageError
from .outage import OUTAGE_REASON, RETRY_AFTER_DATABASE_S, database_answers, refuse
from .recording import with_recording
from .runtime import Runtime
from .store import API_KEY_PREFIX, Store
from .tokens import SessionClaims
from .ws_auth import Rejected, check_handshake

log = structlog.get_logger("switchboard.realtime")

DOOR: Final = "realtime"
FIRST_EVENT_TIMEOUT_S: Final = 2.0
DEFAULT_MODEL: Final = "gpt-realtime"
MAX_AGENT_REF: Final = 200
"""The longest ``?agent_id=`` (an agent's id or name) looked up."""


@dataclass(frozen=True)
class Refusal:
    """Refuse the handshake with HTTP ``status`` and ``reason`` (short, safe to show)."""

    status: int
    reason: str
    cause: str | None = None
    """Set when the database could not answer (a 503): why, for the log only."""


@dataclass(frozen=True)
class RealtimeAdmission:
    """Who may call: the tenant, the agent, and the session when a token named one."""

    tenant_id: UUID
    agent_id: UUID
    agent: AgentSpec
    session_id: UUID | None
    via: Literal["api_key", "session_token"]
    claims: SessionClaims | None = None
    """The session token's claims (its ``mode`` and ``test_mode``), when it came with one."""

    def chain(self, configured: Sequence[str] | None) -> ChosenChain:
        """The call's chain (:mod:`.call_chain`): the session's, else the configuration's
        or the agent's."""
        if self.claims is not None:
            return chain_for_session(self.agent, self.claims, configured)
        return chain_for_call(self.agent, configured=configured)


TokenCheck = Callable[
    [Mapping[str, str], Mapping[str, Sequence[str]]], Awaitable[SessionClaims | Refusal]
]
"""Checks a session token at the handshake (headers lower-cased, query as ``parse_qs``
gives it) and spends it; returns its claims or a :class:`Refusal`, and logs its own
``auth.rejected`` line. The lead wires ``orchestrator.ws_auth.check_handshake`` here."""


async def authenticate(
    headers: Mapping[str, str],
    query: Mapping[str, Sequence[str]],
    store: Store,
    check_token: TokenCheck | None,
) -> RealtimeAdmission | Refusal:
    """Decide a ``/v1/realtime`` handshake; writes nothing unless a token is spent.

    Never raises for a bad credential; a database failure is ``Refusal(503, ...)``.
    """
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return _refused(401, "Authorization: Bearer <session token or API key> is required")
    asked = query.get("agent_id", [""])[0].strip()
    if len(asked) > MAX_AGENT_REF:
        return _refused(400, f"agent_id must be an agent's id or name (at most {MAX_AGENT_REF})")
    try:
        if credential.startswith(API_KEY_PREFIX):
            return await _by_api_key(store, credential, asked)
        if check_token is None:
            return _refused(401, "session tokens are not accepted on this server")
        claims = await check_token(headers, query)
        if isinstance(claims, Refusal):
            return claims
        if asked and await _agent_ref(store, claims.tenant_id, asked) != claims.agent_id:
            return _refused(403, "agent_id is not the session token's agent")
        agent = await _agent(store, claims.tenant_id, claims.agent_id)
        if agent is None:
            return _refused(403, "the session token's agent no longer exists")
        return RealtimeAdmission(
            claims.tenant_id, claims.agent_id, agent, claims.session_id, "session_token", claims
        )
    except StorageError as exc:  # the door logs it: the credential was not judged
        return Refusal(503, OUTAGE_REASON, str(exc) or type(exc).__name__)


async def _check_session_token(
    rt: Runtime, headers: Mapping[str, str], query: Mapping[str, Sequence[str]]
) -> SessionClaims | Refusal:
    result = await check_handshake(
        headers,
        query,
        keyring=rt.keyring,
        issuer=rt.settings.token_issuer,
        store=rt.store,
        door=DOOR,
    )
    if isinstance(result, Rejected):
        return Refusal(result.status, result.reason, result.cause)
    return result.claims


async def _by_api_key(store: Store, key: str, asked: str) -> RealtimeAdmission | Refusal:
    tenant_id = await trio.to_thread.run_sync(store.tenant_for_api_key, key)
    if tenant_id is None:
        return _refused(401, "unknown or revoked API key")
    if not asked:
        return _refused(400, "?agent_id=<agent id or name> is required with a tenant API key")
    agent_id = await _agent_ref(store, tenant_id, asked)
    if agent_id is None:
        return _refused(403, "no such agent for this tenant")
    agent = await _agent(store, tenant_id, agent_id)
    if agent is None:
        return _refused(403, "no such agent for this tenant")
    return RealtimeAdmission(tenant_id, agent_id, agent, None, "api_key")


async def _agent(store: Store, tenant_id: UUID, agent_id: UUID) -> AgentSpec | None:
    """The tenant's agent, or None if it has none by that id (or its spec is unreadable).

    Raises:
        StorageError: the database is away (it does not answer a ``SELECT 1`` either).
    """
    try:
        return await trio.to_thread.run_sync(store.get_agent, tenant_id, agent_id)
    except StorageError:
        if not await database_answers(store):
            raise
        return None


async def _mark(store: Store, tenant_id: UUID, session_id: UUID, status: str) -> None:
    """Mark the session ``status``; while the database is away, log it and go on (an
    admitted call does not need the database: its events spool)."""
    try:
        await trio.to_thread.run_sync(
            partial(store.mark_session, tenant_id, session_id, status=status)
        )
    except StorageError as exc:
        log.warning("session not marked", status=status, error=str(exc)[:300])


def _refused(status: int, reason: str) -> Refusal:
    log.warning("auth.rejected", door=DOOR, status=status, reason=reason)
    return Refusal(status, reason)


async def _agent_ref(store: Store, tenant_id: UUID, ref: str) -> UUID | None:
    """The id of the tenant's agent ``ref`` names: an agent id as given (checked when the
    agent is read), else the id of the tenant's agent by that name; None: no such name."""
    try:
        return UUID(ref)
    except ValueError:
        found: UUID | None = await trio.to_thread.run_sync(store.agent_id_by_name, tenant_id, ref)
        return found


async def realtime_stream(
    ws: AsgiWebSocket, rt: Runtime, *, check_token: TokenCheck | None = None
) -> None:
    """One ``/v1/realtime`` connection: authenticate, accept, run the call on it.

    Session tokens are checked (and spent) by :func:`ws_auth.check_handshake`
    with the runtime's keyring, unless ``check_token`` is given (tests).
    """
    ticket = rt.admission.start_call(DOOR, local=False)
    if isinstance(ticket, Refused):
        await ws.reject(503, ticket.message, retry_after_s=ticket.retry_after_s)
        return
    with ticket:
        if check_token is None:
            check_token = partial(_check_session_token, rt)
        admission = await authenticate(ws.headers, ws.query, rt.store, check_token)
        if isinstance(admission, Refusal):
            if admission.cause is not None:
                refuse(rt.admission.metrics, DOOR, admission.cause)
                await ws.reject(503, OUTAGE_REASON, retry_after_s=RETRY_AFTER_DATABASE_S)
            else:
                await ws.reject(admission.status, admission.reason)
            return
        chosen = admission.chain(rt.configured_chain())
        if chosen.local_first:  # a local-first call needs a local slot too
            refused = ticket.make_local()
            if refused is not None:
                await ws.reject(503, refused.message, retry_after_s=refused.retry_after_s)
                return
        await _admitted(ws, rt, admission, chosen)


async def _admitted(
    ws: AsgiWebSocket, rt: Runtime, admission: RealtimeAdmission, chosen: ChosenChain
) -> None:
    store = rt.store
    session_id = admission.session_id
    if session_id is None:
        try:
            session_id = await trio.to_thread.run_sync(
                partial(
                    store.create_session, admission.tenant_id, admission.agent_id, transport=DOOR
                )
            )
        except StorageError as exc:
            refuse(rt.admission.metrics, DOOR, exc)
            await ws.reject(503, OUTAGE_REASON, retry_after_s=RETRY_AFTER_DATABASE_S)
            return
    mark = partial(_mark, store, admission.tenant_id, session_id)
    beta = "realtime=v1" in ws.headers.get("openai-beta", "").replace(" ", "")
    dialect: wire.Dialect = "beta" if beta else "ga"
    model = ws.query.get("model", [DEFAULT_MODEL])[0][:100]

    await ws.accept()
    if ws.closed:
        await mark("ended")
        return
    default = session_in_effect(
        admission.agent, wire.PCM16_24K, session_id=f"sess_{session_id.hex}", model=model
    )
    await ws.send(
        wire.encode_server_event(wire.SessionCreated(session=default, event_id="event_0"), dialect)
    )
    first: str | bytes | None = None
    with trio.move_on_after(FIRST_EVENT_TIMEOUT_S):
        first = await ws.receive()
        if first is None:  # gone before the call started
            await mark("ended")
            return
    await mark("active")
    ctx = CallContext(
        session_id=session_id,
        tenant_id=admission.tenant_id,
        agent_id=admission.agent_id,
        agent=chosen.agent,
        t0=trio.current_time(),
        caller_format=caller_format(call_format(first)),
        extra={
            "transport": DOOR,
            "auth": admission.via,
            "model": model,
            "dialect": dialect,
            "mode_source": chosen.source,
            "test_mode": admission.claims.test_mode if admission.claims else False,
        },
    )
    ctx = with_recording(ctx, rt.resources.recordings)  # state unknown: consent announced

    def make_transport(
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        hear: HearCaller,
        events: EventSink,
    ) -> RealtimeTransport:
        # Caller audio goes through the channel, not ``hear``: one append may carry
        # seconds of audio, and the channel's backpressure paces it into the provider.
        return RealtimeTransport(
            ctx,
            socket=ws,
            inbox=inbox,
            to_supervisor=to_supervisor,
            events=events,
            dialect=dialect,
            model=model,
            pending=() if first is None else (first,),
        )

    log.info("realtime call admitted", session_id=str(session_id), via=admission.via)
    await run_call(ctx, make_transport, rt.resources, door=DOOR)
