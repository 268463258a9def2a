"""What a Python tool costs beside calling its function directly, in the same run.

    python bench/bench_python_tools.py [--rounds N] [--json]

- Per tool call: CPU microseconds of ``await PythonToolRunner(...)(invocation)``
  (binding the arguments, the call context, compact JSON, the cap) against
  ``await function(**arguments)`` plus ``json.dumps`` of its answer, the least
  any runner does. Batches interleaved round-robin, median over rounds.
- Per lookup: ``load_python_tool`` (scan the installed distributions' entry
  points, import, read the signature) against one bare
  ``importlib.metadata.entry_points(group=...)`` scan. A runner looks an entry
  point up once per process.

The tool is installed for the run as a ``*.dist-info`` in a temporary folder on
``sys.path``, as the tests do. Ratios, not absolute times, carry across machines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any
from uuid import UUID

import trio

from switchboard.actors.tools.invocation import ToolInvocation
from switchboard.actors.tools.python_tools import (
    ENTRY_POINT_GROUP,
    PythonToolRunner,
    load_python_tool,
)

BATCH = 500
TOOL = '''
from typing import Literal

from switchboard.actors.tools.invocation import ToolInvocation


async def check_slots(day: str, call: ToolInvocation,
                      part: Literal["morning", "afternoon", "any"] = "any") -> dict[str, object]:
    """Free times on a day."""
    return {"day": day, "part": part, "free": ["09:30", "10:00", "14:30"]}
'''


def install(site: Path) -> None:
    (site / "bench_tools.py").write_text(textwrap.dedent(TOOL), encoding="utf-8")
    info = site / "bench_tools-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-tools\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ncheck_slots = bench_tools:check_slots\n"
    )
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()


def invocation() -> ToolInvocation:
    return ToolInvocation(
        "call_1", "check_slots", {"day": "2030-01-07", "part": "morning"},
        UUID(int=1), UUID(int=2), UUID(int=3), "acme", "front-desk", from_number="+15005550100",
    )  # fmt: skip


async def per_call_us(rounds: int) -> dict[str, float]:
    tool = load_python_tool("check_slots")
    runner = PythonToolRunner({"check_slots": "check_slots"})
    call = invocation()

    async def direct() -> object:
        return json.dumps(await tool.function(**call.arguments, call=call))

    async def through_runner() -> object:
        return await runner(call)

    jobs: dict[str, Callable[[], Awaitable[object]]] = {
        "direct": direct,
        "runner": through_runner,
    }
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for job in jobs.values():  # warm up (the runner's first call looks the entry point up)
        for _ in range(BATCH):
            await job()
    for _ in range(rounds):
        for name, job in jobs.items():
            t0 = time.process_time_ns()
            for _ in range(BATCH):
                await job()
            samples[name].append((time.process_time_ns() - t0) / BATCH / 1000)
    return {name: statistics.median(v) for name, v in samples.items()}


def per_lookup_ms(rounds: int) -> dict[str, float]:
    jobs: dict[str, Callable[[], object]] = {
        "entry_points scan": lambda: metadata.entry_points(group=ENTRY_POINT_GROUP),
        "load_python_tool": lambda: load_python_tool("check_slots"),
    }
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            t0 = time.process_time_ns()
            job()
            samples[name].append((time.process_time_ns() - t0) / 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as site:
        install(Path(site))
        call = trio.run(per_call_us, args.rounds)
        lookup = per_lookup_ms(args.rounds)
    report: dict[str, Any] = {
        "per_call_us": call,
        "runner_vs_direct": call["runner"] / call["direct"],
        "per_lookup_ms": lookup,
        "lookup_vs_scan": lookup["load_python_tool"] / lookup["entry_points scan"],
        "distributions_installed": len(list(metadata.distributions())),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"per tool call (CPU us): direct {call['direct']:.1f}, runner {call['runner']:.1f}"
            f" -> runner/direct {report['runner_vs_direct']:.2f}x"
        )
        print(
            f"per lookup (CPU ms, {report['distributions_installed']} distributions installed):"
            f" scan {lookup['entry_points scan']:.2f}, load_python_tool"
            f" {lookup['load_python_tool']:.2f} -> {report['lookup_vs_scan']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
