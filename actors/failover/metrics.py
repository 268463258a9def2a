"""Failover counters, for ``GET /metrics`` (Prometheus exposition, via ``prometheus-client``).

One counter, ``switchboard_failover_events_total{event, provider, detail}``,
counts each event the supervisor logs for failover: ``provider.failed``
(detail: the failure kind), ``failover.switch`` (detail: the provider switched
to), ``failover.suppressed`` (detail: the reason), ``failover.reconnect`` and
``failover.exhausted`` (no detail), and ``provider.skipped`` (a link of the
chain that cannot run here; detail: ``unknown_mode``, ``not_built``,
``not_configured``) and ``provider.bad_message`` (a message the adapter could
not read; no detail), these two counted by the call's observer (see
:mod:`switchboard.orchestrator.call_metrics`). ``provider`` is the failed (or
switched from, or skipped) provider.

The counter lives in a :class:`prometheus_client.CollectorRegistry` given to
the constructor (the server's, which also serves its own call metrics), or in
a private one. Under ``prometheus-client``'s multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR`` set before the process started) its values go
to the shared folder, and the server's exposition sums them over every
worker; :meth:`FailoverMetrics.count` still reads this process's value only.
Thread-safe (``prometheus-client`` locks each value); one instance is shared
by every call of the process, like :class:`~.health.ProviderHealth`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, generate_latest

COUNTED: Final = {
    "provider.failed": "kind",
    "failover.switch": "to",
    "failover.suppressed": "reason",
    "failover.reconnect": "",
    "failover.exhausted": "",
    "provider.skipped": "reason",
    "provider.bad_message": "",
}
"""Event type -> the payload key that labels it (besides the provider)."""

METRIC: Final = "switchboard_failover_events"
"""The counter's name; the exposition adds ``_total``."""


class FailoverMetrics:
    """Counts failover events (see the module docstring).

    Args:
        registry: where the counter is registered; a private registry if None.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._events = Counter(
            METRIC,
            "Failover events since the process started.",
            ("event", "provider", "detail"),
            registry=self.registry,
        )

    def observe(self, type_: str, payload: Mapping[str, Any]) -> None:
        """Count one event if it is a failover event; ignore the rest."""
        label = COUNTED.get(type_)
        if label is None:
            return
        provider = str(payload.get("provider") or payload.get("from") or "")
        detail = str(payload.get(label) or "") if label else ""
        self._events.labels(type_, provider, detail).inc()

    def count(self, type_: str, provider: str = "", detail: str = "") -> int:
        """How many ``type_`` events this process counted for ``provider`` and ``detail``."""
        value = self.registry.get_sample_value(
            METRIC + "_total", {"event": type_, "provider": provider, "detail": detail}
        )
        return int(value or 0)

    def prometheus_text(self) -> str:
        """This registry in the Prometheus text format 0.0.4 (this process's figures)."""
        return generate_latest(self.registry).decode()
