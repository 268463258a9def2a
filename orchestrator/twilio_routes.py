"""Twilio's two doors: the voice webhook (TwiML) and the Media Streams WebSocket.

``POST /twilio/incoming`` checks ``X-Twilio-Signature`` against the public URL
(``PUBLIC_URL``, never the Host header) with the ``twilio`` package's
``RequestValidator`` (Twilio, "Webhooks security"); on failure it answers 403
and creates nothing. Otherwise it looks up the agent of the called number and
asks admission control for room (:meth:`Admission.reserve_stream`, which
holds the room for the stream, on whichever worker it lands, until it arrives
or its token expires). Refused (the server is full or draining), it answers
the agent's ``when_busy`` TwiML (:func:`busy_twiml`) and creates nothing.
Admitted, it creates the session row with a single-use admission token (a
hash is stored, never the token), and answers ``<Connect><Stream>`` with the
token in a ``<Parameter>``.

``WS /twilio/stream`` reads ``connected`` and ``start``, and consumes the
admission token from ``start.customParameters`` before anything else is
opened, and before any other field of ``start`` is read (issue 11; a
malformed field then fails the spent session, 1008); a missing, wrong,
expired or reused token, or any message other than ``start`` first, closes
the socket with 1008 (policy violation). A stream
with a good token is never refused for capacity, not even while draining: its
caller was promised the call when the webhook answered.

The call's chain (:mod:`.call_chain`): ``?mode=MODE`` on the webhook's URL (set by
the operator in the number's configuration; the signature covers the query), else
the dialled number's mode in the agent file, else the runtime configuration's chain,
else the agent's own. The webhook decides the first two and passes them to the stream
in ``<Parameter>``s (``mode``, ``mode_source``); the stream decides the rest when it
starts. An unknown ``?mode=`` is ignored with a ``twilio.mode_ignored`` log line (the
call goes on on the agent's chain rather than fail).

While PostgreSQL is away (see :mod:`.outage`): the webhook answers an apology
and the agent's ``when_busy`` transfer or a hang-up (the agent from the
process's recent lookups when the lookup itself fails) and creates nothing;
a stream whose admission token cannot be checked closes with 1011 and a
reason; a stream admitted before the outage runs on (its events spool).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final, TypeVar

import structlog
import trio
from quart import Response, request
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from switchboard.actors.context import PHONE_AUDIO, CallContext, EventSink
from switchboard.actors.messages import HearCaller, ToSupervisor, ToTransport
from switchboard.actors.twilio_transport import TwilioTransport
from switchboard.codecs import twilio_media as wire

from .admission import Refused
from .agents import MODES, AgentSpec
from .asgi_ws import AsgiWebSocket
from .call import run_call
from .call_chain import ChosenChain, chain_for_call
from .errors import StorageError
from .outage import OUTAGE_REASON, outage_twiml, refuse
from .recording import with_recording
from .recording_policy import caller_state
from .runtime import Runtime
from .store import Admission

log = structlog.get_logger("switchboard.twilio")

T = TypeVar("T")

ADMISSION_TTL_S = 60
START_TIMEOUT_S = 10.0
WEBHOOK_DATABASE_TIMEOUT_S = 5.0
"""How long the webhook waits for each database step before it answers the outage TwiML
(Twilio gives a webhook 15 s in all)."""
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
INCOMING: Final = "twilio.incoming"
STREAM: Final = "twilio.stream"
CALLER_STATE_PARAMETER: Final = "caller_state"
"""The stream's ``<Parameter>`` carrying the caller's state (``FromState``) from the
webhook, where Twilio's signature vouches for it, to the call (the consent rule)."""
FROM_PARAMETER: Final = "from"
TO_PARAMETER: Final = "to"
MODE_PARAMETER: Final = "mode"
MODE_SOURCE_PARAMETER: Final = "mode_source"
"""The webhook's choice of the chain's head (``?mode=`` or the number's mode) and why,
carried to the stream."""
BUSY_MESSAGE: Final = "All our lines are busy right now. Please call again in a few minutes."


def admission_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def reservation_key(hash_hex: str) -> bytes:
    """The call table's key for an admission token: the first 16 bytes of its hash."""
    return bytes.fromhex(hash_hex[:32])


def busy_twiml(agent: AgentSpec) -> VoiceResponse:
    """What a caller gets when the server cannot take the call, per ``agent.when_busy``.

    ``reject``: ``<Reject reason="busy"/>`` (the caller hears a busy tone and
    Twilio bills nothing); ``message``: ``<Say>`` :data:`BUSY_MESSAGE` then
    ``<Hangup/>``; ``transfer``: ``<Dial>`` the agent's ``transfer_number``
    (Twilio TwiML reference: ``<Reject>``, ``<Say>``, ``<Dial>``).
    """
    twiml = VoiceResponse()
    if agent.when_busy == "message":
        twiml.say(BUSY_MESSAGE)
        twiml.hangup()
    elif agent.when_busy == "transfer" and agent.transfer_number:
        twiml.dial(agent.transfer_number)
    else:
        twiml.reject(reason="busy")
    return twiml


def twiml_response(twiml: VoiceResponse) -> Response:
    return Response(str(twiml), status=200, mimetype="text/xml")


async def incoming_call(rt: Runtime) -> Response:
    """The voice webhook Twilio calls when the number rings."""
    form = await request.form
    params = {key: form.get(key, "") for key in form}
    url = rt.settings.base_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(rt.twilio_auth_token).validate(url, params, signature):
        log.warning(
            "auth.rejected",
            door="twilio.incoming",
            reason="bad X-Twilio-Signature",
            call_sid=params.get("CallSid"),
        )
        return Response("invalid Twilio signature\n", status=403, mimetype="text/plain")

    to_number = params.get("To", "")
    try:
        record = await _within_webhook_deadline(rt.store.agent_for_number, to_number)
    except (StorageError, trio.TooSlowError) as exc:
        refuse(rt.admission.metrics, INCOMING, exc)
        known = rt.numbers.recall(to_number)
        return twiml_response(outage_twiml(known.spec if known else None))
    rt.numbers.remember(to_number, record)
    if record is None:
        log.warning("call to a number with no agent", to_number=to_number)
        twiml = VoiceResponse()
        twiml.say("Sorry, this number is not in service.")
        twiml.hangup()
        return twiml_response(twiml)

    chosen = chain_for_call(
        record.spec,
        query_mode=_query_mode(params.get("CallSid")),
        number_mode=record.spec.number_modes.get(to_number),
        configured=rt.configured_chain(),
    )
    token = secrets.token_urlsafe(32)
    token_hash = admission_hash(token)
    key = reservation_key(token_hash)
    refused = rt.admission.reserve_stream(
        INCOMING, key, local=chosen.local_first, ttl_s=ADMISSION_TTL_S
    )
    if isinstance(refused, Refused):
        return twiml_response(busy_twiml(record.spec))
    try:
        session_id = await _within_webhook_deadline(
            partial(
                rt.store.create_session,
                record.tenant_id,
                record.agent_id,
                transport="twilio",
                call_sid=params.get("CallSid"),
                from_number=params.get("From"),
                to_number=to_number,
                admission_hash=token_hash,
                admission_ttl_s=ADMISSION_TTL_S,
            )
        )
    except (StorageError, trio.TooSlowError) as exc:
        rt.admission.release_stream(key)
        refuse(rt.admission.metrics, INCOMING, exc)
        return twiml_response(outage_twiml(record.spec))
    except BaseException:
        rt.admission.release_stream(key)
        raise
    log.info("call admitted to stream", session_id=str(session_id), call_sid=params.get("CallSid"))
    twiml = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=rt.settings.websocket_base_url + "/twilio/stream")
    stream.parameter(name="token", value=token)
    stream.parameter(name="session_id", value=str(session_id))
    state = caller_state(params.get("FromState") or params.get("CallerState"))
    if state is not None:  # carried to the stream like the token: the consent rule needs it
        stream.parameter(name=CALLER_STATE_PARAMETER, value=state)
    for name, value in ((FROM_PARAMETER, params.get("From")), (TO_PARAMETER, to_number)):
        if value:  # the call's numbers, for its tools (a webhook's `call.from`)
            stream.parameter(name=name, value=value)
    if chosen.source in ("query", "number"):
        stream.parameter(name=MODE_PARAMETER, value=chosen.first)
        stream.parameter(name=MODE_SOURCE_PARAMETER, value=chosen.source)
    twiml.append(connect)
    return twiml_response(twiml)


def _query_mode(call_sid: str | None) -> str | None:
    """The webhook URL's ``?mode=``, if it names a mode (else None, logged)."""
    mode = request.args.get("mode")
    if mode is None or mode in MODES:
        return mode
    log.warning(
        "twilio.mode_ignored",
        mode=mode[:50],
        call_sid=call_sid,
        reason=f"?mode= must be one of {', '.join(MODES)}",
    )
    return None


def _stream_chain(rt: Runtime, agent: AgentSpec, parameters: Mapping[str, str]) -> ChosenChain:
    """The stream's chain: the webhook's choice if it made one, else the configured
    chain or the agent's as they are now."""
    mode, source = parameters.get(MODE_PARAMETER), parameters.get(MODE_SOURCE_PARAMETER)
    if mode not in MODES:
        mode = None
    return chain_for_call(
        agent,
        query_mode=mode if source == "query" else None,
        number_mode=mode if source == "number" else None,
        configured=rt.configured_chain(),
    )


async def _within_webhook_deadline(sync_fn: Callable[..., T], *args: Any) -> T:
    """``sync_fn(*args)`` in a thread, given up after :data:`WEBHOOK_DATABASE_TIMEOUT_S`
    (raises ``trio.TooSlowError``; the thread is left to finish on its own)."""
    with trio.fail_after(WEBHOOK_DATABASE_TIMEOUT_S):
        return await trio.to_thread.run_sync(sync_fn, *args, abandon_on_cancel=True)


async def media_stream(ws: AsgiWebSocket, rt: Runtime) -> None:
    """One Twilio Media Stream: admit it, then run the call on it."""
    await ws.accept()
    if ws.closed:
        return
    first = await _read_start(ws)
    if first is None:
        return
    text, credentials = first  # issue 11: only what admission needs is read before it
    token = credentials.token
    token_hash = admission_hash(token)
    try:
        admission = (
            await trio.to_thread.run_sync(
                rt.store.consume_admission, token_hash, credentials.call_sid
            )
            if token
            else None
        )
    except StorageError as exc:
        refuse(rt.admission.metrics, STREAM, exc)
        rt.admission.release_stream(reservation_key(token_hash))  # this call will not come
        await ws.close(INTERNAL_ERROR, OUTAGE_REASON)
        return
    claimed = credentials.session_id
    if admission is None or (claimed is not None and claimed != str(admission.session_id)):
        log.warning(
            "auth.rejected",
            door="twilio.stream",
            call_sid=credentials.call_sid,
            reason="admission token missing, invalid, expired, already used or not this call's",
        )
        await ws.close(POLICY_VIOLATION, "admission token missing, invalid, expired or used")
        return
    try:
        start: Any = wire.parse_inbound(text)
    except wire.MediaStreamError as exc:
        start = exc
    if not isinstance(start, wire.Start):
        problem = f"malformed 'start' ({getattr(start, 'reason', 'not a start')})"
        log.warning("stream refused", reason=problem, session_id=str(admission.session_id))
        await trio.to_thread.run_sync(
            partial(
                rt.store.mark_session, admission.tenant_id, admission.session_id, status="failed"
            )
        )
        await ws.close(POLICY_VIOLATION, problem)
        return

    try:
        agent = await trio.to_thread.run_sync(
            rt.store.get_agent, admission.tenant_id, admission.agent_id
        )
    except StorageError as exc:  # the database went away after the token was spent
        refuse(rt.admission.metrics, STREAM, exc)
        await ws.close(INTERNAL_ERROR, OUTAGE_REASON)
        return
    chosen = _stream_chain(rt, agent, start.custom_parameters)
    key = reservation_key(token_hash)
    with rt.admission.claim_stream(STREAM, key, local=chosen.local_first):
        await _run_stream(ws, rt, start, admission, chosen)


async def _run_stream(
    ws: AsgiWebSocket, rt: Runtime, start: wire.Start, admission: Admission, chosen: ChosenChain
) -> None:
    try:
        await trio.to_thread.run_sync(
            partial(
                rt.store.mark_session,
                admission.tenant_id,
                admission.session_id,
                status="active",
                stream_sid=start.stream_sid,
            )
        )
    except StorageError as exc:  # admitted: the call goes on, its events spool
        log.warning("session not marked active; the call goes on", error=str(exc)[:300])
    ctx = CallContext(
        session_id=admission.session_id,
        tenant_id=admission.tenant_id,
        agent_id=admission.agent_id,
        agent=chosen.agent,
        t0=trio.current_time(),
        caller_format=PHONE_AUDIO,
        call_sid=start.call_sid,
        stream_sid=start.stream_sid,
        from_number=start.custom_parameters.get(FROM_PARAMETER) or None,
        to_number=start.custom_parameters.get(TO_PARAMETER) or None,
        extra={"mode_source": chosen.source},
    )
    state = caller_state(start.custom_parameters.get(CALLER_STATE_PARAMETER))
    ctx = with_recording(ctx, rt.resources.recordings, caller_state=state)

    def make_transport(
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        hear: HearCaller,
        events: EventSink,
    ) -> TwilioTransport:
        return TwilioTransport(
            ctx,
            socket=ws,
            stream_sid=start.stream_sid,
            inbox=inbox,
            to_supervisor=to_supervisor,
            hear=hear,
            events=events,
            playout_lead_ms=rt.settings.playout_lead_ms,
        )

    await run_call(ctx, make_transport, rt.resources, door=STREAM)


async def _read_start(ws: AsgiWebSocket) -> tuple[str | bytes, wire.StartAdmission] | None:
    """Read up to ``start``: its text, and the part of it admission needs (the rest is
    read once the token is spent). Close with 1008 (returning None) on anything else."""
    problem = f"no 'start' within {START_TIMEOUT_S:g} s"
    with trio.move_on_after(START_TIMEOUT_S):
        while True:
            text = await ws.receive()
            if text is None:
                return None
            try:
                message = wire.parse_pre_start(text)
            except wire.MediaStreamError as exc:
                problem = (
                    f"'{_event_name(text)}' before 'start'"
                    if exc.reason == "unknown_event"
                    else f"malformed message before 'start' ({exc.reason})"
                )
                break
            if isinstance(message, wire.StartAdmission):
                return text, message
    log.warning("stream refused", reason=problem)
    await ws.close(POLICY_VIOLATION, problem)
    return None


def _event_name(text: str | bytes) -> str:
    """The ``event`` of a message already known to be JSON with an unknown event, for a
    close reason (escaped, at most 20 characters)."""
    try:
        event = wire.parse_inbound(text)
    except wire.MediaStreamError:
        return "an unknown event"
    return type(event).__name__.lower()
