"""The server's metrics, served at ``GET /metrics`` in the Prometheus text format 0.0.4.

Metrics (``prometheus-client``; times in seconds). Label values are bounded
(no session ids, no tenant names, no tool names): ``door`` is
``twilio.stream``, ``browser.voice``, ``browser.stream`` or ``realtime``;
``mode`` a provider mode (``local``, ``openai-realtime``, ``gemini-live``,
``cascaded``, else ``other``).

Calls (counted by each call's observer, :mod:`.call_metrics`):

- ``switchboard_calls_active{door, mode}``: gauge, calls running now (from
  their ``session.start`` to their end); ``mode`` is the first provider of the
  chain the call used (``session.start``'s ``provider``).
- ``switchboard_calls_started_total{door, mode}``: counter.
- ``switchboard_calls_ended_total{door, mode, reason}``: counter; ``reason``
  is the end reason's class: ``caller_hung_up``, ``agent_hung_up``,
  ``gave_up`` (failover exhausted, apology played), ``max_duration``,
  ``idle``, ``transport_failed``, ``crashed``, ``other``.
- ``switchboard_response_latency_seconds{mode}``: histogram, the caller
  finished speaking (``speech.stopped``, or the transcript for a provider
  without end-of-speech events, or a typed line) -> the runtime has the
  answer's first audio to send (``response.audio``); ``mode`` is the provider
  that answered.
- ``switchboard_greeting_latency_seconds{mode}``: histogram, call start -> the
  greeting's first audio.
- ``switchboard_tool_latency_seconds{kind}``: histogram, ``tool:call`` ->
  ``tool:result``; ``kind`` is the tool's kind (``builtin``, ``webhook``,
  ``function``, ``python``, ``unknown`` for a name the agent lacks).
- ``switchboard_tool_errors_total{kind, error}``: counter, failed tool calls;
  ``error`` is the tool error kind (``timeout``, ``refused``,
  ``http_status``, ``invalid_arguments``, ..., ``other``).
- ``switchboard_event_write_lag_seconds``: histogram, for each batch of call
  events the event logger commits, how long its oldest event waited from
  being numbered to being committed in PostgreSQL (a histogram: the tail is
  what matters; events that go through the spool instead are not in it).

Providers and failover:

- ``switchboard_failover_events_total{event, provider, detail}``: counter,
  see :mod:`switchboard.actors.failover.metrics`: provider errors
  (``event="provider.failed"``, detail: the failure kind), failovers
  (``failover.switch``, detail: the provider switched to), reconnects,
  suppressed switches, exhausted chains, and links skipped
  (``provider.skipped``, detail: ``not_configured``, ...). Each failure,
  failover and tool error is also a log line (``provider.failed``,
  ``failover.switch``, ``failover.exhausted``, ``tool.failed``, ...) with the
  call's ``session_id``, ``tenant_id`` and ``call_sid``.

Server:

- ``switchboard_calls_in_progress{door}``: gauge, calls admitted and not yet
  ended, by the door they came in at (``twilio.stream``, ``browser.voice``,
  ``browser.stream``, ``realtime``).
- ``switchboard_calls_refused_total{door, reason}``: counter, calls refused
  before they started (door ``twilio.incoming``, ``browser.voice``,
  ``browser.stream``, ``realtime``; reason ``capacity``, ``local_capacity``,
  ``draining``, ``database_unavailable``).
- ``switchboard_call_capacity{kind}``: gauge, the calls the server admits at
  most, ``kind="all"`` for every call and ``kind="local"`` for calls whose
  first provider is ``local``.
- ``switchboard_calls_reserved``: gauge, Twilio calls whose webhook was
  answered and whose stream has not arrived yet (read from the shared call
  table at each scrape, so it is the whole server's figure).
- ``switchboard_spool_journals``: gauge, call journals in ``DATA_DIR/spool``
  that no live call holds: events waiting to be written to PostgreSQL by the
  spool drainer (read from the folder at each scrape: the whole server's
  figure).

With several worker processes (``serve --workers N``) the values live in
``prometheus-client``'s multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``,
made fresh by the parent at each start, see :mod:`.workers`): counters add up
over every worker that ever ran, gauges over the live workers (``livesum``;
the parent calls ``mark_process_dead`` for a worker that exits), so any
worker's ``/metrics`` gives the whole server's figures. In one process they
live in a private registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from switchboard.actors.failover.metrics import FailoverMetrics

from .call_metrics import CallMetrics
from .errors import ConfigError

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    """The failover counters plus the server's call metrics (see the module docstring).

    Args:
        failover: the failover counters the calls update; made here (in the
            server's registry) if None. Its registry serves every metric.
        multiprocess_dir: ``PROMETHEUS_MULTIPROC_DIR`` of a multi-worker
            server, whose exposition then sums the folder's files.

    Raises:
        ConfigError: ``multiprocess_dir`` is given but ``prometheus-client``
            is not in multiprocess mode (the variable must be set before the
            process starts).
    """

    def __init__(
        self,
        failover: FailoverMetrics | None = None,
        *,
        multiprocess_dir: Path | None = None,
    ) -> None:
        if multiprocess_dir is not None and not getattr(values.ValueClass, "_multiprocess", False):
            raise ConfigError(
                "PROMETHEUS_MULTIPROC_DIR must be set before the worker process starts"
            )
        self.failover = failover if failover is not None else FailoverMetrics()
        registry = self.failover.registry
        self.in_progress = Gauge(
            "switchboard_calls_in_progress",
            "Calls admitted and not yet ended, by door.",
            ("door",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.refused = Counter(
            "switchboard_calls_refused",
            "Calls refused before they started, by door and reason.",
            ("door", "reason"),
            registry=registry,
        )
        self.capacity = Gauge(
            "switchboard_call_capacity",
            "Calls the server admits at most (kind: all calls, or calls whose first "
            "provider is local).",
            ("kind",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.calls = CallMetrics(registry)
        self._exposed = registry
        if multiprocess_dir is not None:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, str(multiprocess_dir))  # type: ignore[no-untyped-call]

    def watch_reserved(self, read: Callable[[], int]) -> None:
        """Serve ``switchboard_calls_reserved`` from ``read()`` (the call table's count of
        streams expected), called at each scrape."""
        self._exposed.register(_Reserved(read))

    def watch_spool(self, folder: Path) -> None:
        """Serve ``switchboard_spool_journals`` from ``folder`` (``DATA_DIR/spool``),
        counted at each scrape."""
        self._exposed.register(_Spool(folder))

    def set_capacity(self, calls: int, local_calls: int) -> None:
        """Set this process's share of ``switchboard_call_capacity``."""
        self.capacity.labels("all").set(calls)
        self.capacity.labels("local").set(local_calls)

    def exposition(self) -> bytes:
        """Every metric, in the Prometheus text format 0.0.4 (:data:`CONTENT_TYPE`)."""
        return generate_latest(self._exposed)


class _Reserved(Collector):
    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "switchboard_calls_reserved",
            "Twilio calls answered by the webhook whose stream has not arrived yet.",
            value=self._read(),
        )


class _Spool(Collector):
    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "switchboard_spool_journals",
            "Call journals waiting in the spool for PostgreSQL (no live call holds them).",
            value=waiting_journals(self._folder),
        )


def waiting_journals(folder: Path) -> int:
    """The journals in ``folder`` no live call holds (a live call keeps its journal
    locked, :mod:`.journal`): each is tried with a non-blocking lock, released at once."""
    waiting = 0
    with contextlib.suppress(OSError):
        for path in folder.glob("*.jsonl"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # written back and deleted meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                waiting += 1
            except BlockingIOError:
                pass  # a live call's journal, or the drainer writing it now
            finally:
                os.close(fd)  # closing releases the lock
    return waiting
