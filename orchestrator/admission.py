"""Admission control: a call beyond the server's capacity is refused before it starts.

Each worker process admits calls up to its capacity (``MAX_CALLS_PER_WORKER``,
and ``MAX_LOCAL_CALLS_PER_WORKER`` for calls whose first provider is
``local``, which are CPU-heavy); the counts and the rule are in the shared
:class:`~.call_table.CallTable`, so a Twilio webhook answered by one worker
reserves room for its stream wherever the stream lands. The doors:

- ``POST /twilio/incoming``: :meth:`Admission.reserve_stream` before the
  session is made; refused, the webhook answers the agent's ``when_busy``
  TwiML (see :mod:`.twilio_routes`).
- ``WS /twilio/stream``: :meth:`Admission.claim_stream` once the admission
  token is spent; never refused for capacity (the caller would get a dead
  line).
- ``WS /v1/voice``, ``WS /app/voice/stream/{id}``, ``WS /v1/realtime``:
  :meth:`Admission.start_call` before the token is spent and before the
  upgrade; refused, HTTP 503 with ``Retry-After``.
- ``GET /ready``: :meth:`Admission.not_ready` (503 while draining or full).

While the worker drains every door refuses new calls (reason ``draining``).
Every refusal is one ``call.refused`` log line (door, reason) and one count
of ``switchboard_calls_refused_total``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal

import structlog

from .call_table import CallTable
from .config import usable_cores
from .metrics import ServerMetrics

log = structlog.get_logger("switchboard.admission")

RESERVATION_MARGIN_S: Final = 5.0
"""A reservation outlives its admission token (PostgreSQL's clock) by this much."""
RETRY_AFTER_FULL_S: Final = 5
RETRY_AFTER_DRAINING_S: Final = 30

Reason = Literal["capacity", "local_capacity", "draining"]


@dataclass(frozen=True)
class Refused:
    """A call refused at ``door`` for ``reason``; ``retry_after_s`` is the HTTP hint."""

    door: str
    reason: Reason

    @property
    def retry_after_s(self) -> int:
        return RETRY_AFTER_DRAINING_S if self.reason == "draining" else RETRY_AFTER_FULL_S

    @property
    def message(self) -> str:
        """A short reason for the client."""
        if self.reason == "draining":
            return "the server is draining; try another instance"
        return "all lines are busy; try again shortly"


class Ticket:
    """An admitted call's place; :meth:`close` (or leaving a ``with``) gives it back once."""

    def __init__(self, admission: Admission, door: str, local: bool) -> None:
        self.door = door
        self.local = local
        self._admission = admission
        self._open = True

    def make_local(self) -> Refused | None:
        """The call turned out local-first (its agent is known now): take a local-call
        slot too, or say why not (then close the ticket and refuse the call)."""
        if self.local:
            return None
        refused = self._admission._make_local(self)
        if refused is None:
            self.local = True
        return refused

    def close(self) -> None:
        if self._open:
            self._open = False
            self._admission._finish(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Admission:
    """One worker's door keeper (see the module docstring).

    Args:
        table: the server's call table.
        worker: this worker's slot in it.
        metrics: where refusals and calls in progress are counted (one admission per
            metrics object: it serves ``switchboard_calls_reserved`` from this table).
        clock: seconds on ``CLOCK_MONOTONIC`` (the table's clock).
    """

    def __init__(
        self,
        table: CallTable,
        worker: int,
        metrics: ServerMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.worker = worker
        self.metrics = metrics
        self.draining = False
        self.leaving = False
        """Set first when a drain has a grace period: /ready answers 503, calls still come in."""
        self._clock = clock
        metrics.watch_reserved(self.pending_streams)

    @classmethod
    def in_process(
        cls,
        metrics: ServerMetrics | None = None,
        *,
        max_calls: int = 100,
        max_local_calls: int | None = None,
    ) -> Admission:
        """A single-process server's admission (a table in this process's memory)."""
        local = max_local_calls if max_local_calls is not None else 2 * usable_cores()
        table = CallTable.in_memory(workers=1, reservations=max(1, max_calls))
        admission = cls(table, 0, metrics or ServerMetrics())
        admission.open(max_calls=max_calls, max_local_calls=local)
        return admission

    def open(self, *, max_calls: int, max_local_calls: int) -> None:
        """Take this worker's slot with these capacities (no calls yet)."""
        self.table.set_worker(
            self.worker, pid=os.getpid(), capacity=max_calls, local_capacity=max_local_calls
        )
        self.metrics.set_capacity(max_calls, max_local_calls)

    # -- doors

    def start_call(self, door: str, *, local: bool) -> Ticket | Refused:
        """Admit a call at a door that starts it at once (browser, ``/v1/realtime``)."""
        if self.draining:
            return self._refuse(door, "draining")
        refusal = self.table.admit(self.worker, local=local, now=self._clock())
        if refusal is not None:
            return self._refuse(door, refusal)
        return self._ticket(door, local)

    def reserve_stream(self, door: str, key: bytes, *, local: bool, ttl_s: float) -> Refused | None:
        """Reserve room for the stream a webhook announces (``key``: 16 bytes of the
        admission token's hash); it is held ``ttl_s`` plus a margin, or until claimed."""
        if self.draining:
            return self._refuse(door, "draining")
        refusal = self.table.reserve(
            key, local=local, now=self._clock(), ttl_s=ttl_s + RESERVATION_MARGIN_S
        )
        return None if refusal is None else self._refuse(door, refusal)

    def release_stream(self, key: bytes) -> None:
        """The webhook that reserved ``key`` failed: give the room back."""
        self.table.release(key)

    def claim_stream(self, door: str, key: bytes, *, local: bool) -> Ticket:
        """The stream of an admitted webhook arrived: it is a call now, never refused."""
        held = self.table.claim(self.worker, key, local=local, now=self._clock())
        if not held:
            log.info("stream arrived after its reservation expired; admitted", door=door)
        return self._ticket(door, local)

    def not_ready(self) -> str | None:
        """Why ``/ready`` should answer 503 (``draining``, ``full``), or None."""
        if self.draining or self.leaving:
            return "draining"
        return "full" if self.table.counts(self._clock()).full else None

    def pending_streams(self) -> int:
        """Streams the server still expects (reserved, not expired)."""
        return self.table.counts(self._clock()).reserved

    # -- inside

    def _ticket(self, door: str, local: bool) -> Ticket:
        self.metrics.in_progress.labels(door).inc()
        return Ticket(self, door, local)

    def _make_local(self, ticket: Ticket) -> Refused | None:
        refusal = self.table.make_local(self.worker, now=self._clock())
        return None if refusal is None else self._refuse(ticket.door, refusal)

    def _finish(self, ticket: Ticket) -> None:
        self.table.finish(self.worker, local=ticket.local)
        self.metrics.in_progress.labels(ticket.door).dec()

    def _refuse(self, door: str, reason: Reason) -> Refused:
        log.warning("call.refused", door=door, reason=reason)
        self.metrics.refused.labels(door, reason).inc()
        return Refused(door, reason)
