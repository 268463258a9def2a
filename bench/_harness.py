"""Shared by the benchmarks in ``bench/``: percentiles and the figures' summary.

Import it as ``from _harness import ...``: ``python bench/<name>.py`` puts
``bench/`` first on ``sys.path``. :func:`use_test_helpers` makes the test
helpers of ``tests/`` (``call_harness``: the fake Twilio, the in-memory store)
importable the same way.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; ``values`` must not be empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """``{n, median_ms, p99_ms, min_ms, max_ms}`` of durations given in seconds ({} if none)."""
    if not seconds:
        return {}
    ms = [1000.0 * s for s in seconds]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 0.99),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def use_test_helpers() -> None:
    """Put ``tests/`` on ``sys.path`` so ``call_harness`` imports as the tests import it."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
