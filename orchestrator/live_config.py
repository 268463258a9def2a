"""The runtime configuration in force in one worker, kept current.

:class:`LiveConfig` holds the layers (:mod:`.runtime_config`) and the effective
configuration, and applies it to the worker's :class:`.Runtime`: the configured chain
(:attr:`.Runtime.configured_chain`) and the providers' endpoints of
:class:`.call.CallResources`. A call reads both once, when it starts, so a change
never disturbs a call in flight; the next call runs on it.

:meth:`LiveConfig.watch` looks every :data:`POLL_INTERVAL_S` at the ``api`` layer's
version in PostgreSQL (so a ``PUT /config`` answered by one worker, or by another
instance, reaches every worker within about a second) and at ``DATA_DIR/config.yaml``'s
modification time and size. While PostgreSQL is away the configuration in force stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import structlog
import trio

from .config_store import (
    FileLayerError,
    file_stamp,
    read_api_layer,
    read_file_layer,
    write_api_layer,
)
from .db import Database
from .errors import StorageError
from .runtime import Runtime
from .runtime_config import Effective, Source, effective

log = structlog.get_logger("switchboard.config")

POLL_INTERVAL_S: Final = 1.0


class LiveConfig:
    """One worker's runtime configuration (see the module docstring).

    Args:
        db: the database the ``api`` layer is in.
        data_dir: where ``config.yaml`` is.
        env: the ``env`` layer (:func:`.runtime_config.env_layer`).
    """

    def __init__(self, db: Database, data_dir: Path, env: Mapping[str, Any]) -> None:
        self.db = db
        self.data_dir = data_dir
        self.env = dict(env)
        self.api: dict[str, Any] = {}
        self.api_version = 0
        self.file: dict[str, Any] = {}
        self.file_stamp: tuple[int, int] | None = None
        self.file_error: str | None = None
        """Why ``config.yaml`` is not in force (the last good one is), or None."""
        self.current: Effective = effective(self._layers())
        self._runtimes: list[Runtime] = []

    def _layers(self) -> dict[Source, Mapping[str, Any]]:
        return {"api": self.api, "file": self.file, "env": self.env}

    def attach(self, rt: Runtime) -> None:
        """Apply the configuration to ``rt`` now and at every change."""
        self._runtimes.append(rt)
        rt.configured_chain = lambda: self.current.chain
        self._apply(rt)

    def _apply(self, rt: Runtime) -> None:
        rt.resources.endpoints = self.current.endpoints()

    def _recompute(self) -> None:
        before = self.current
        self.current = effective(self._layers())
        if self.current != before:
            changed = sorted(k for k in self.current.values if self._differs(before, k))
            log.info("config.applied", fields=changed, api_version=self.api_version)
            for rt in self._runtimes:
                self._apply(rt)

    def _differs(self, before: Effective, name: str) -> bool:
        return (before.values.get(name), before.sources.get(name)) != (
            self.current.values.get(name),
            self.current.sources.get(name),
        )

    # -- sync: run in a thread

    def refresh(self) -> None:
        """Read what changed (the ``api`` layer's version, the file's stamp) and apply it.

        Raises:
            StorageError: PostgreSQL is away (the configuration in force stays).
        """
        stamp = file_stamp(self.data_dir)
        if stamp != self.file_stamp:
            self.file_stamp = stamp
            self.reload_file()
        api = read_api_layer(self.db)
        if api.version != self.api_version:
            self.api, self.api_version = api.settings, api.version
        self._recompute()

    def reload_file(self) -> str | None:
        """Read ``config.yaml`` again now; the problem if it cannot be used (the last good
        file layer then stays in force), else None."""
        try:
            self.file = read_file_layer(self.data_dir)
        except FileLayerError as exc:
            if str(exc) != self.file_error:
                log.error("config.file_refused", error=str(exc)[:500])
            self.file_error = str(exc)
            return self.file_error
        self.file_error = None
        self._recompute()
        return None

    def put(self, changes: Mapping[str, Any]) -> int:
        """Merge ``changes`` (validated; ``None`` clears a field) into the ``api`` layer,
        store it and apply it here at once; the layer's new version."""
        merged = {**self.api, **changes}
        settings = {k: v for k, v in merged.items() if v is not None}
        version = write_api_layer(self.db, settings)
        self.api, self.api_version = settings, version
        self._recompute()
        return version

    # -- async

    async def watch(self, interval_s: float = POLL_INTERVAL_S) -> None:
        """Keep the configuration current until cancelled (see the module docstring)."""
        away = False
        while True:
            try:
                await trio.to_thread.run_sync(self.refresh)
                away = False
            except StorageError as exc:
                if not away:
                    log.warning(
                        "config.unreadable; the configuration in force stays", error=str(exc)[:300]
                    )
                away = True
            await trio.sleep(interval_s)
