"""The process-wide health record of provider modes: a circuit breaker per mode.

Every call of the process shares one :class:`ProviderHealth`. A mode that
failed is *open*: new calls, and switches inside running calls, skip it for
the agent's ``cooldown_seconds``. After the cooldown the first call that
starts the mode is its *probe* (the mode is *half-open*); other calls keep
skipping it while the probe is out. The probe's success closes the circuit,
its failure opens it again for a new cooldown. A probe that never reports
(its caller hung up during the handshake) stops blocking others after
``probe_lease_s``.

::

    closed --failure--> open --cooldown over, attempt--> half-open (probing)
       ^                 ^                                   |        |
       |                 +------------- failure -------------+        |
       +------------------------------- success ----------------------+

Keyed by mode (``"openai-realtime"``), not by agent: an outage of a provider
is everyone's. The cooldown is the caller's to give (it is a per-agent
setting), so one record serves agents with different cooldowns.

Time comes from the injected ``clock`` (seconds, monotonic). The runtime
passes ``trio.current_time`` so that tests on Trio's MockClock and replays
see the same virtual time as the call; the default is ``time.monotonic``.

Thread-safe: every method holds a ``threading.Lock`` for a few dictionary
operations and never blocks otherwise, so calling it from a Trio task is
fine too. There is no I/O and nothing is awaited.

How a supervisor drives it:

1. before choosing a link: ``health.cooldowns(chain, settings.cooldown_seconds)``
   (give it to the policy as ``cooling_down``);
2. when starting a provider: ``health.record_attempt(mode)``;
3. when the provider has answered (its first output): ``health.record_success(mode)``;
4. on every failure of the provider: ``health.record_failure(mode, kind)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal, final

__all__ = ["DEFAULT_PROBE_LEASE_S", "CircuitState", "ModeHealth", "ProviderHealth"]

DEFAULT_PROBE_LEASE_S: Final = 15.0
"""How long a probe blocks other calls at most: longer than a connect timeout
plus a stall timeout, so a probe normally reports before its lease ends."""

CircuitState = Literal["closed", "open", "half_open"]
"""``closed``: healthy; ``open``: failed, cooling down or waiting for a probe;
``half_open``: a probe is out."""


@final
@dataclass(frozen=True, slots=True)
class ModeHealth:
    """What the record knows of one mode (for status pages and logs).

    Attributes:
        mode: the provider mode.
        state: the circuit's state (:data:`CircuitState`).
        failed_at_s: clock time of the last failure, or None when closed.
        last_failure_kind: ``kind`` of the last failure (``"http_5xx"``...), or None.
        consecutive_failures: failures since the last success.
        probe_started_at_s: clock time the current probe started, or None.
    """

    mode: str
    state: CircuitState
    failed_at_s: float | None = None
    last_failure_kind: str | None = None
    consecutive_failures: int = 0
    probe_started_at_s: float | None = None


class ProviderHealth:
    """Circuit breakers for provider modes, shared by every call of the process.

    Args:
        clock: returns the current time in seconds (monotonic); injected so
            tests and replays control it (``trio.current_time`` in the runtime).
        probe_lease_s: how long an unfinished probe keeps other calls away.

    Raises:
        ValueError: ``probe_lease_s`` is not positive.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        probe_lease_s: float = DEFAULT_PROBE_LEASE_S,
    ) -> None:
        if not probe_lease_s > 0:
            raise ValueError(f"probe_lease_s must be positive, got {probe_lease_s}")
        self._clock = clock
        self._probe_lease_s = probe_lease_s
        self._lock = threading.Lock()
        self._open: dict[str, ModeHealth] = {}  # only modes whose circuit is not closed

    def cooldowns(self, modes: Iterable[str], cooldown_seconds: float) -> Mapping[str, float]:
        """The modes among ``modes`` to skip now, each with the seconds until it may be tried.

        A mode is skipped while it is within ``cooldown_seconds`` of its last
        failure, and after that while another call's probe of it is out
        (until the probe reports or its lease ends). Modes that may be tried
        (closed, or open and due for a probe) are absent.

        Returns:
            mode -> seconds (> 0) until the mode may be tried again.
        """
        now = self._clock()
        skipped: dict[str, float] = {}
        with self._lock:
            for mode in modes:
                record = self._open.get(mode)
                if record is None or record.failed_at_s is None:
                    continue
                wait = record.failed_at_s + cooldown_seconds - now
                if record.probe_started_at_s is not None:
                    wait = max(wait, record.probe_started_at_s + self._probe_lease_s - now)
                if wait > 0:
                    skipped[mode] = wait
        return skipped

    def record_attempt(self, mode: str) -> bool:
        """A call is starting a provider of ``mode``; True when this attempt is a probe.

        An attempt on an open circuit is its probe (it becomes half-open until
        the attempt reports, or its lease ends). On a closed circuit nothing
        changes.
        """
        now = self._clock()
        with self._lock:
            record = self._open.get(mode)
            if record is None:
                return False
            self._open[mode] = replace(record, state="half_open", probe_started_at_s=now)
            return True

    def record_success(self, mode: str) -> None:
        """A provider of ``mode`` answered: a probe's success closes the circuit.

        Only a probe (an attempt made after the failure, see
        :meth:`record_attempt`) is evidence of recovery: the success of a
        session opened before the failure leaves an open circuit open.
        """
        with self._lock:
            record = self._open.get(mode)
            if record is not None and record.probe_started_at_s is not None:
                del self._open[mode]

    def record_failure(self, mode: str, kind: str) -> None:
        """A provider of ``mode`` failed with ``kind``: the circuit opens for a new cooldown."""
        now = self._clock()
        with self._lock:
            previous = self._open.get(mode)
            count = 1 if previous is None else previous.consecutive_failures + 1
            self._open[mode] = ModeHealth(
                mode=mode,
                state="open",
                failed_at_s=now,
                last_failure_kind=kind,
                consecutive_failures=count,
            )

    def status(self, mode: str) -> ModeHealth:
        """The record of ``mode`` (closed with no history when it never failed, or recovered)."""
        with self._lock:
            return self._open.get(mode) or ModeHealth(mode=mode, state="closed")
