"""What the doors answer while PostgreSQL is away.

Every call starts with a database step (a number's agent, a session row, a
token or admission token spent); when that step raises
:class:`~switchboard.orchestrator.errors.StorageError` (or takes longer than
the door can wait), the door refuses the call with a defined answer instead
of a 500 or a traceback:

- ``POST /twilio/incoming``: :func:`outage_twiml`, an apology then the
  agent's ``when_busy`` transfer or a hang-up; the agent comes from
  :class:`RecentNumbers` when the lookup itself failed.
- ``POST /v1/sessions``, ``POST /practice/session``: 503, JSON error, ``Retry-After``.
- ``WS /v1/voice``, ``/app/voice/stream/{id}``, ``/v1/realtime``: 503 with
  ``Retry-After`` before the upgrade.
- ``WS /twilio/stream``: close 1011 with :data:`OUTAGE_REASON`.

Each refusal is one warning line, ``call.refused`` with ``reason``
:data:`DATABASE_UNAVAILABLE` and the error's text (no stack trace), and one
count of ``switchboard_calls_refused_total{door, reason="database_unavailable"}``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

import structlog
import trio
from twilio.twiml.voice_response import VoiceResponse

from .agents import AgentSpec
from .errors import StorageError
from .metrics import ServerMetrics
from .store import AgentRecord, Store

log = structlog.get_logger("switchboard.outage")

DATABASE_UNAVAILABLE: Final = "database_unavailable"
RETRY_AFTER_DATABASE_S: Final = 10
"""The ``Retry-After`` hint (seconds) while PostgreSQL is away: a restart takes seconds."""
OUTAGE_REASON: Final = "the call database is unavailable; try again shortly"
"""What a refused client is told (HTTP body, close reason)."""
OUTAGE_APOLOGY: Final = "Sorry, we cannot take your call right now because of a technical problem."
RECENT_NUMBERS: Final = 1024


def refuse(metrics: ServerMetrics, door: str, error: BaseException | str) -> None:
    """Log and count one call refused at ``door`` because the database is away."""
    text = error if isinstance(error, str) else (str(error) or type(error).__name__)
    log.warning("call.refused", door=door, reason=DATABASE_UNAVAILABLE, error=text[:300])
    metrics.refused.labels(door, DATABASE_UNAVAILABLE).inc()


async def database_answers(store: Store) -> bool:
    """Whether PostgreSQL answers a ``SELECT 1`` now: tells a lookup that found nothing
    (:class:`StorageError` from the store for a missing row) from one that could not ask."""
    try:
        await trio.to_thread.run_sync(store.ping)
    except StorageError:
        return False
    return True


def outage_twiml(agent: AgentSpec | None) -> VoiceResponse:
    """The webhook's answer while the database is away (Twilio TwiML: ``<Say>``, then
    ``<Dial>`` or ``<Hangup>``).

    :data:`OUTAGE_APOLOGY`, then, for an agent whose ``when_busy`` is ``transfer``
    (with a ``transfer_number``), ``<Dial>`` to that number; otherwise (``reject``,
    ``message``, or the agent unknown) an invitation to call again and ``<Hangup/>``:
    after a ``<Say>`` the call is answered, so a ``<Reject>`` would only hang up.
    """
    twiml = VoiceResponse()
    if agent is not None and agent.when_busy == "transfer" and agent.transfer_number:
        twiml.say(OUTAGE_APOLOGY + " Let me put you through to someone who can help.")
        twiml.dial(agent.transfer_number)
    else:
        twiml.say(OUTAGE_APOLOGY + " Please call again in a few minutes.")
        twiml.hangup()
    return twiml


class RecentNumbers:
    """The last ``size`` successful number -> agent lookups of this process (least
    recently used dropped first), read only when the database cannot answer one.

    Not shared between worker processes: a worker that never saw the number
    answers the plain apology.
    """

    def __init__(self, size: int = RECENT_NUMBERS) -> None:
        self._size = size
        self._records: OrderedDict[str, AgentRecord | None] = OrderedDict()

    def remember(self, number: str, record: AgentRecord | None) -> None:
        """``number`` has ``record`` now (None: no agent)."""
        self._records[number] = record
        self._records.move_to_end(number)
        while len(self._records) > self._size:
            self._records.popitem(last=False)

    def recall(self, number: str) -> AgentRecord | None:
        """The agent last seen on ``number``, or None (no agent, or not seen)."""
        record = self._records.get(number)
        if record is not None:
            self._records.move_to_end(number)
        return record
