"""Process-wide failover counters, for ``GET /metrics`` (Prometheus text format).

One counter per event type the supervisor logs for failover
(``provider.failed``, ``failover.switch``, ``failover.suppressed``,
``failover.reconnect``, ``failover.exhausted``), labelled by provider and by
kind or reason where the event has one. Thread-safe; shared by every call of
the process like :class:`~.health.ProviderHealth`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

COUNTED: Final = {
    "provider.failed": "kind",
    "failover.switch": "to",
    "failover.suppressed": "reason",
    "failover.reconnect": "",
    "failover.exhausted": "",
}
"""Event type -> the payload key that labels it (besides the provider)."""


class FailoverMetrics:
    """Counts failover events (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def observe(self, type_: str, payload: Mapping[str, Any]) -> None:
        """Count one event if it is a failover event; ignore the rest."""
        if type_ not in COUNTED:
            return
        label = COUNTED[type_]
        key = (type_, str(payload.get("provider") or payload.get("from") or ""), "")
        if label:
            key = (key[0], key[1], str(payload.get(label) or ""))
        with self._lock:
            self._counts[key] += 1

    def count(self, type_: str, provider: str = "", detail: str = "") -> int:
        with self._lock:
            return self._counts[(type_, provider, detail)]

    def prometheus_text(self) -> str:
        """``switchboard_failover_events_total{event=...,provider=...,detail=...} N`` lines."""
        with self._lock:
            items = sorted(self._counts.items())
        lines = [
            "# HELP switchboard_failover_events_total Failover events since the process started.",
            "# TYPE switchboard_failover_events_total counter",
        ]
        for (type_, provider, detail), n in items:
            lines.append(
                f'switchboard_failover_events_total{{event="{type_}",provider="{provider}",'
                f'detail="{detail}"}} {n}'
            )
        return "\n".join(lines) + "\n"
