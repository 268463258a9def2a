"""Where the runtime configuration's layers are kept (see :mod:`.runtime_config`).

- The ``api`` layer: one row in PostgreSQL (``runtime_config``, schema version 9),
  read and written through ``switchboard_runtime_config()`` and
  ``switchboard_put_runtime_config(jsonb)``; its ``version`` grows at each write.
- The ``file`` layer: ``DATA_DIR/config.yaml``, a YAML mapping of fields. Edit it
  in place or replace it (write a temporary file, then rename it over: a reader
  never sees half a file). A file that does not parse or validate is reported
  and the last good one stays in force.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from .db import Database
from .runtime_config import validate

FILE_NAME: Final = "config.yaml"


@dataclass(frozen=True)
class ApiLayer:
    settings: dict[str, Any]
    version: int
    """0: ``PUT /config`` was never called."""


def read_api_layer(db: Database) -> ApiLayer:
    """The ``api`` layer as stored (sync; raises StorageError while PostgreSQL is away)."""
    with db.anonymous() as cur:
        cur.execute("SELECT settings, version FROM switchboard_runtime_config()")
        row = cur.fetchone()
    if row is None:
        return ApiLayer({}, 0)
    return ApiLayer(dict(row[0]), int(row[1]))


def write_api_layer(db: Database, settings: dict[str, Any]) -> int:
    """Replace the ``api`` layer with ``settings`` (validated by the caller); its new
    version."""
    with db.anonymous() as cur:
        cur.execute("SELECT switchboard_put_runtime_config(%s::jsonb)", (json.dumps(settings),))
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


class FileLayerError(ValueError):
    """``config.yaml`` does not parse or has bad fields; the message says where."""


def file_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def file_stamp(data_dir: Path) -> tuple[int, int] | None:
    """What tells a changed file (modification time in ns, size); None: no file."""
    try:
        stat = file_path(data_dir).stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def read_file_layer(data_dir: Path) -> dict[str, Any]:
    """The ``file`` layer ({} without a file).

    Raises:
        FileLayerError: the file is not YAML, not a mapping, or has bad fields.
    """
    path = file_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise FileLayerError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FileLayerError(f"{path}: not YAML: {exc}") from None
    if data is None:
        return {}
    problems = validate(data)
    if problems:
        listed = "; ".join(f"{k or 'file'}: {v}" for k, v in problems.items())
        raise FileLayerError(f"{path}: {listed}")
    return {k: v for k, v in data.items() if v is not None}
