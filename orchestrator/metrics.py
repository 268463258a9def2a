"""The server's metrics, served at ``GET /metrics`` in the Prometheus text format 0.0.4.

Metrics (``prometheus-client``):

- ``switchboard_failover_events_total{event, provider, detail}``: counter,
  see :mod:`switchboard.actors.failover.metrics`.
- ``switchboard_calls_in_progress{door}``: gauge, calls admitted and not yet
  ended, by the door they came in at (``twilio.stream``, ``browser.voice``,
  ``browser.stream``, ``realtime``).
- ``switchboard_calls_refused_total{door, reason}``: counter, calls refused
  before they started (door ``twilio.incoming``, ``browser.voice``,
  ``browser.stream``, ``realtime``; reason ``capacity``, ``local_capacity``,
  ``draining``).
- ``switchboard_call_capacity{kind}``: gauge, the calls the server admits at
  most, ``kind="all"`` for every call and ``kind="local"`` for calls whose
  first provider is ``local``.
- ``switchboard_calls_reserved``: gauge, Twilio calls whose webhook was
  answered and whose stream has not arrived yet (read from the shared call
  table at each scrape, so it is the whole server's figure).

With several worker processes (``serve --workers N``) the values live in
``prometheus-client``'s multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``,
made fresh by the parent at each start, see :mod:`.workers`): counters add up
over every worker that ever ran, gauges over the live workers (``livesum``;
the parent calls ``mark_process_dead`` for a worker that exits), so any
worker's ``/metrics`` gives the whole server's figures. In one process they
live in a private registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from switchboard.actors.failover.metrics import FailoverMetrics

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
        self._exposed = registry
        if multiprocess_dir is not None:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, str(multiprocess_dir))  # type: ignore[no-untyped-call]

    def watch_reserved(self, read: Callable[[], int]) -> None:
        """Serve ``switchboard_calls_reserved`` from ``read()`` (the call table's count of
        streams expected), called at each scrape."""
        self._exposed.register(_Reserved(read))

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
