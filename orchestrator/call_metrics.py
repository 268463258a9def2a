"""The calls' metrics and operator log lines, taken from each call's event rows.

:class:`CallObserver` sees every event of one call as the event logger numbers
it (``run_call`` tees it beside the journal's ``on_logged``), and each batch
the logger commits (``on_written``): one place, per event, never per audio
frame. It updates :class:`CallMetrics` (the metrics are listed in
:mod:`.metrics`) and writes a structlog line for each provider failure,
failover and tool error; the call's ids (``session_id``, ``tenant_id``,
``call_sid``) are in context for every line (bound by ``run_call``).

Labels are bounded: ``door`` is one of the server's doors, ``mode`` a provider
mode of :data:`~switchboard.actors.providers.ADAPTERS` (``other`` else),
``reason`` an end-reason class of :data:`END_REASONS`, ``kind`` a tool kind
(``builtin``, ``webhook``, ``function``, ``python``; ``unknown`` for a name
the agent does not have) and ``error`` a tool error kind of
:data:`TOOL_ERRORS` (``other`` else). No session ids, no tool names.

Response latency is measured from when the runtime learned the caller had
finished (``speech.stopped``; ``turn:user`` for a provider without
end-of-speech events, or a typed line) to when the runtime had the first
audio of the next answer to send (``response.audio``), as the replay timeline
measures it; greeting latency from the call's start (its clock's zero) to the
greeting's first audio. Both leave out the network and the caller's jitter
buffer; the supervisor's playout clock is not used (a client that plays
faster than real time, like ``switchboard call``, would skew it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from switchboard.actors.context import CallContext
from switchboard.actors.failover.metrics import FailoverMetrics
from switchboard.actors.providers import ADAPTERS

from .store import EventRow

log = structlog.get_logger("switchboard.call")

END_REASONS: Final = (
    ("caller hung up", "caller_hung_up"),
    ("client closed the connection", "caller_hung_up"),
    ("agent hung up", "agent_hung_up"),
    ("gave up", "gave_up"),
    ("max_call_seconds reached", "max_duration"),
    ("no caller speech", "idle"),
    ("transport failed", "transport_failed"),
    ("error:", "crashed"),
)
"""End reason prefix -> the ``reason`` label of ``switchboard_calls_ended_total``
(anything else: ``other``)."""

TOOL_ERRORS: Final = frozenset(
    {
        "unknown_tool",
        "invalid_arguments",
        "crashed",
        "timeout",
        "not_configured",
        "http_status",
        "invalid_json",
        "unavailable",
        "network",
        "refused",
        "too_large",
    }
)
"""The tool error kinds the executor and the runners give (others: ``other``)."""

SKIP_REASONS: Final = (
    ("unknown provider mode", "unknown_mode"),
    ("is not available in this build", "not_built"),
    ("needs", "not_configured"),
)

LATENCY_BUCKETS_S: Final = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
TOOL_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WRITE_LAG_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def end_reason_class(reason: str) -> str:
    """The bounded ``reason`` label of a call's free-text end reason."""
    for prefix, label in END_REASONS:
        if reason.startswith(prefix):
            return label
    return "other"


def bounded_mode(mode: object) -> str:
    """``mode`` if it is a provider mode this build knows, else ``other``."""
    return mode if isinstance(mode, str) and mode in ADAPTERS else "other"


def door_of(ctx: CallContext) -> str:
    """The door of a call whose door did not say: ``realtime``, ``browser.voice`` or
    ``twilio.stream`` from what the door put in the context, else ``other``."""
    transport = ctx.extra.get("transport")
    if transport == "realtime":
        return "realtime"
    if transport == "browser":
        return "browser.voice"
    return "twilio.stream" if ctx.call_sid else "other"


class CallMetrics:
    """The per-call metrics of one process (see :mod:`.metrics` for what each means).

    Args:
        registry: where they are registered (the server's); a private one if None.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.active = Gauge(
            "switchboard_calls_active",
            "Calls running now, by door and mode (the first provider of the chain used).",
            ("door", "mode"),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.started = Counter(
            "switchboard_calls_started",
            "Calls started, by door and mode.",
            ("door", "mode"),
            registry=r,
        )
        self.ended = Counter(
            "switchboard_calls_ended",
            "Calls ended, by door, mode and end reason class.",
            ("door", "mode", "reason"),
            registry=r,
        )
        self.response_latency = Histogram(
            "switchboard_response_latency_seconds",
            "Caller finished speaking -> first audio of the answer, by answering mode.",
            ("mode",),
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.greeting_latency = Histogram(
            "switchboard_greeting_latency_seconds",
            "Call start -> first audio of the greeting, by mode.",
            ("mode",),
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tool_latency = Histogram(
            "switchboard_tool_latency_seconds",
            "Tool call -> its result, by tool kind.",
            ("kind",),
            buckets=TOOL_BUCKETS_S,
            registry=r,
        )
        self.tool_errors = Counter(
            "switchboard_tool_errors",
            "Tool calls that failed, by tool kind and error kind.",
            ("kind", "error"),
            registry=r,
        )
        self.write_lag = Histogram(
            "switchboard_event_write_lag_seconds",
            "Oldest event of each committed batch: numbered -> committed to PostgreSQL.",
            buckets=WRITE_LAG_BUCKETS_S,
            registry=r,
        )


class CallObserver:
    """One call's observer (see the module docstring); ``on_logged`` and ``on_written``
    run in the event logger's task and never block; :meth:`close` at the call's end.

    Args:
        ctx: the call.
        door: the door the call came in at (``twilio.stream``, ``browser.voice``,
            ``browser.stream``, ``realtime``).
        metrics: the process's call metrics.
        failover: the process's failover counters (``provider.skipped`` is counted
            there; the supervisor counts the rest of the failover events).
    """

    def __init__(
        self, ctx: CallContext, door: str, metrics: CallMetrics, failover: FailoverMetrics
    ) -> None:
        self._door = door
        self._metrics = metrics
        self._failover = failover
        self._tool_kinds = {t.name: t.kind for t in ctx.agent.tools}
        self._mode: str | None = None  # the chain's first, once session.start is seen
        self._provider = "other"  # the provider answering now
        self._stopped_ms: float | None = None  # the caller finished, not answered yet
        self._vad = False  # the provider reports the end of speech (speech.stopped)
        self._greeted = False
        self._ended = False

    def on_logged(self, row: EventRow) -> None:
        """Observe one event. A bug here is logged and the event skipped: it runs in the
        event logger's task, which must never lose an event for a metric."""
        handle = _HANDLERS.get(row.type)
        if handle is not None:
            try:
                handle(self, row.t_ms, row.payload)
            except Exception:
                log.exception("call metrics: event not observed", type=row.type, seq=row.seq)

    def on_written(self, rows: Sequence[EventRow]) -> None:
        """A batch is committed: the oldest row's wait (numbered -> committed)."""
        if rows:
            lag_s = (datetime.now(UTC) - rows[0].ts).total_seconds()
            self._metrics.write_lag.observe(max(0.0, lag_s))

    def close(self) -> None:
        """The call is over: it is no longer active, even without a ``session.end``."""
        if self._mode is not None and not self._ended:
            self._ended = True
            self._metrics.active.labels(self._door, self._mode).dec()

    # -- handlers, one per event type

    def _session_start(self, t_ms: float, p: Mapping[str, Any]) -> None:
        self._mode = self._provider = bounded_mode(p.get("provider"))
        self._metrics.started.labels(self._door, self._mode).inc()
        self._metrics.active.labels(self._door, self._mode).inc()

    def _session_end(self, t_ms: float, p: Mapping[str, Any]) -> None:
        if self._mode is None or self._ended:
            return
        reason = end_reason_class(str(p.get("reason") or ""))
        self._metrics.ended.labels(self._door, self._mode, reason).inc()
        self.close()

    def _speech_started(self, t_ms: float, p: Mapping[str, Any]) -> None:
        self._stopped_ms = None  # the caller speaks again: the wait starts at the next stop

    def _speech_stopped(self, t_ms: float, p: Mapping[str, Any]) -> None:
        self._vad = True
        self._stopped_ms = t_ms

    def _turn_user(self, t_ms: float, p: Mapping[str, Any]) -> None:
        if (p.get("typed") or not self._vad) and self._stopped_ms is None:
            self._stopped_ms = t_ms

    def _response_audio(self, t_ms: float, p: Mapping[str, Any]) -> None:
        if p.get("greeting"):
            if not self._greeted:
                self._greeted = True
                self._metrics.greeting_latency.labels(self._provider).observe(t_ms / 1e3)
        elif self._stopped_ms is not None:
            wait_s = max(0.0, t_ms - self._stopped_ms) / 1e3
            self._metrics.response_latency.labels(self._provider).observe(wait_s)
            self._stopped_ms = None

    def _provider_ready(self, t_ms: float, p: Mapping[str, Any]) -> None:
        self._provider = bounded_mode(p.get("provider"))

    def _provider_failed(self, t_ms: float, p: Mapping[str, Any]) -> None:
        log.warning(
            "provider.failed",
            provider=p.get("provider"),
            kind=p.get("kind"),
            detail=p.get("detail"),
            turn=p.get("turn"),
            attempt=p.get("attempt"),
        )

    def _provider_skipped(self, t_ms: float, p: Mapping[str, Any]) -> None:
        text = str(p.get("reason") or "")
        reason = next((label for key, label in SKIP_REASONS if key in text), "other")
        provider = bounded_mode(p.get("provider"))
        self._failover.observe("provider.skipped", {"provider": provider, "reason": reason})

    def _provider_bad_message(self, t_ms: float, p: Mapping[str, Any]) -> None:
        provider = bounded_mode(p.get("provider"))  # the adapter logs it
        self._failover.observe("provider.bad_message", {"provider": provider})

    def _failover_switch(self, t_ms: float, p: Mapping[str, Any]) -> None:
        self._provider = bounded_mode(p.get("to"))
        self._vad = False  # the next provider says afresh whether it reports end of speech
        log.warning(
            "failover.switch",
            from_provider=p.get("from"),
            to_provider=p.get("to"),
            turn=p.get("turn"),
            gap_ms=p.get("gap_ms"),
        )

    def _failover_reconnect(self, t_ms: float, p: Mapping[str, Any]) -> None:
        log.warning("failover.reconnect", provider=p.get("provider"), turn=p.get("turn"))

    def _failover_suppressed(self, t_ms: float, p: Mapping[str, Any]) -> None:
        log.warning(
            "failover.suppressed",
            provider=p.get("provider"),
            reason=p.get("reason"),
            detail=p.get("detail"),
            turn=p.get("turn"),
        )

    def _failover_exhausted(self, t_ms: float, p: Mapping[str, Any]) -> None:
        log.error(
            "failover.exhausted",
            provider=p.get("provider"),
            turn=p.get("turn"),
            transfer_to=p.get("transfer_to"),
        )

    def _tool_result(self, t_ms: float, p: Mapping[str, Any]) -> None:
        kind = self._tool_kinds.get(str(p.get("name")), "unknown")
        latency_ms = p.get("latency_ms")
        if isinstance(latency_ms, int | float):
            self._metrics.tool_latency.labels(kind).observe(max(0.0, latency_ms) / 1e3)
        if p.get("ok"):
            return
        error = str(p.get("error") or "")
        self._metrics.tool_errors.labels(kind, error if error in TOOL_ERRORS else "other").inc()
        log.warning(
            "tool.failed",
            tool=p.get("name"),
            tool_kind=kind,
            error=error,
            latency_ms=latency_ms,
            call_id=p.get("call_id"),
        )


_HANDLERS: Final = {
    "session.start": CallObserver._session_start,
    "session.end": CallObserver._session_end,
    "speech.started": CallObserver._speech_started,
    "speech.stopped": CallObserver._speech_stopped,
    "turn:user": CallObserver._turn_user,
    "response.audio": CallObserver._response_audio,
    "provider.ready": CallObserver._provider_ready,
    "provider.failed": CallObserver._provider_failed,
    "provider.skipped": CallObserver._provider_skipped,
    "provider.bad_message": CallObserver._provider_bad_message,
    "failover.switch": CallObserver._failover_switch,
    "failover.reconnect": CallObserver._failover_reconnect,
    "failover.suppressed": CallObserver._failover_suppressed,
    "failover.exhausted": CallObserver._failover_exhausted,
    "tool:result": CallObserver._tool_result,
}
