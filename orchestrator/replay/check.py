"""``switchboard replay --check DIR``: a regression suite made of real calls.

Every trace file in DIR (a ZIP whose manifest says ``switchboard-trace``; other
files are skipped) is replayed and compared with its recording. One line per
trace; the exit status is 1 if any differs, else 2 if any cannot be replayed,
else 0, so an agent repository's CI fails when a change to the agent (or to
Switchboard) changes how a recorded call goes.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path
from typing import Any

from ..errors import SwitchboardError
from ..trace_file import TraceError, read_trace
from .api import Unreplayable, WhatIf
from .compare import DEFAULT_TOLERANCE_MS, compare_events
from .engine import replay_call
from .recorded_call import recorded_call

__all__ = ["check_folder"]


def _is_trace(path: Path) -> bool:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return "manifest.json" in zf.namelist()


def check_folder(folder: Path, *, tolerance_ms: float | None = None, as_json: bool = False) -> int:
    """Replay every trace in ``folder``; print one line (or a JSON list) per trace;
    return the exit status (see the module docstring).

    Raises:
        SwitchboardError: ``folder`` is not a folder, or holds no trace.
    """
    if not folder.is_dir():
        raise SwitchboardError(f"{folder} is not a folder")
    traces = sorted(p for p in folder.iterdir() if _is_trace(p))
    if not traces:
        raise SwitchboardError(f"{folder} holds no trace files (switchboard trace export)")
    tolerance = DEFAULT_TOLERANCE_MS if tolerance_ms is None else tolerance_ms
    results: list[dict[str, Any]] = []
    for path in traces:
        started = time.perf_counter()
        try:
            call = recorded_call(read_trace(path))
            replay = replay_call(call, WhatIf())
        except (Unreplayable, TraceError) as exc:
            results.append({"trace": str(path), "status": "unreplayable", "reason": str(exc)})
            continue
        comparison = compare_events(call.events, replay.events, tolerance_ms=tolerance)
        entry: dict[str, Any] = {
            "trace": str(path),
            "status": "match" if comparison.matches else "differs",
            "events": len(call.events),
            "wall_s": round(time.perf_counter() - started, 3),
        }
        if comparison.first is not None:
            entry["first_divergence"] = comparison.first.describe()
        results.append(entry)
    statuses = {r["status"] for r in results}
    status = 1 if "differs" in statuses else 2 if "unreplayable" in statuses else 0
    if as_json:
        print(json.dumps({"exit": status, "traces": results}, indent=2))
    else:
        for r in results:
            detail = r.get("first_divergence") or r.get("reason") or f"{r['events']} events"
            print(f"{r['status'].upper():<12} {r['trace']}: {detail}")
        counts = {s: sum(1 for r in results if r["status"] == s) for s in sorted(statuses)}
        print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" ({len(results)} traces)")
    return status
