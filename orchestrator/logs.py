"""structlog set-up: JSON lines by default, with the call's ids bound in context."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(log_format: str = "json", level: str = "info", *, worker: int | None = None) -> None:
    """Configure structlog (and the standard library's logging) for the process.

    Every log line carries what ``structlog.contextvars`` has bound, such as
    ``session_id``, ``tenant_id`` and ``call_sid`` during a call, and
    ``worker=<n>`` in a worker process of ``serve --workers N``.
    """
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        level_no = logging.INFO
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )

    def add_worker(
        _logger: object, _name: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event.setdefault("worker", worker)
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *([add_worker] if worker is not None else []),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        # One write per line (print() writes the newline apart): the workers share stderr,
        # and two lines ended at the same moment came out as one.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(level_no, logging.WARNING), stream=sys.stderr)
