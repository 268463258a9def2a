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

    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        *([add_worker] if worker is not None else []),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        # One write per line (print() writes the newline apart): the workers share stderr,
        # and two lines ended at the same moment came out as one.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(shared, renderer, level_no)


def _route_stdlib_logging(
    shared: list[structlog.typing.Processor], renderer: structlog.typing.Processor, level: int
) -> None:
    """The standard library's loggers (hypercorn's, psycopg's, ...) write through the same
    renderer: one format on stderr, JSON lines by default, with a ``logger`` key. Their
    warnings and errors are kept; hypercorn's own start line ("Running on ...") too."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)  # configured again (tests, a worker): one handler only
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger("hypercorn.error").setLevel(level)


_HANDLER_NAME = "switchboard"
