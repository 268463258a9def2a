"""Figures of ``bench_load.py`` from raw step results, the targets of issue 10, and tables."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import numpy as np

FRAME_S = 0.02
CORES = 2


def _pct(values: np.ndarray, q: float) -> float | None:
    return None if values.size == 0 else round(float(np.percentile(values, q)), 2)


def _reasons(calls: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(c["reason"] for c in calls if c.get("reason")).most_common(4))


def relay_figures(step: dict[str, Any]) -> dict[str, Any]:
    """Per step and target: calls, audio returned, echo delay, CPU per call-minute, RSS."""
    calls = step["calls"]
    status = Counter(c["status"] for c in calls)
    sent = sum(c["sent"] for c in calls)
    echoed = sum(c["echoed"] for c in calls)
    delays = np.concatenate([np.asarray(c["delays"], dtype=np.float64) for c in calls] or [[]])
    late = np.concatenate([np.asarray(c["late_ms"], dtype=np.float64) for c in calls] or [[]])
    call_minutes = sent * FRAME_S / 60
    n = len(calls)
    connected = [c for c in calls if c.get("deflate") is not None]
    return {
        "target": step["target"],
        "calls": n,
        "completed": status["completed"],
        "refused": status["refused"],
        "failed": status["failed"],
        "reasons": _reasons(calls),
        "audio_returned": round(echoed / sent, 4) if sent else None,
        "echo_delay_ms": {
            "p50": _pct(delays, 50),
            "p95": _pct(delays, 95),
            "p99": _pct(delays, 99),
            "max": _pct(delays, 100),
        },
        "non_echo_frames": sum(c["other"] for c in calls),
        "call_minutes": round(call_minutes, 2),
        "server_cpu_s": round(step["server_cpu_s"], 2),
        "cpu_s_per_call_minute": (
            round(step["server_cpu_s"] / call_minutes, 3) if call_minutes else None
        ),
        "events_per_call_minute": (
            round(step.get("events_written", 0) / call_minutes, 1) if call_minutes else None
        ),
        "event_kib_per_call_minute": (
            round(step.get("event_bytes_written", 0) / 1024 / call_minutes, 1)
            if call_minutes
            else None
        ),
        "postgres_cpu_s_per_call_minute": (
            round(step["postgres_cpu_s"] / call_minutes, 3) if call_minutes else None
        ),
        "echo_fake_cpu_s": round(step["echo_cpu_s"], 2),
        "loadgen_cpu_s": round(step["loadgen_cpu_s"], 2),
        "loadgen_cpu_share": round(step["loadgen_cpu_s"] / step["wall_s"] / CORES, 3),
        "loadgen_send_late_ms": {"p99": _pct(late, 99), "max": _pct(late, 100)},
        "rss_mib": {
            "idle": round(step["rss_idle_mib"], 1),
            "peak": round(step["rss_peak_mib"], 1),
            "after": round(step["rss_after_mib"], 1),
        },
        "rss_kib_per_call": (
            round((step["rss_peak_mib"] - step["rss_idle_mib"]) * 1024 / n, 1) if n else None
        ),
        "caller_leg_deflate": f"{sum(bool(c['deflate']) for c in connected)}/{len(connected)}",
        "provider_leg_deflate": f"{step['provider_deflate']}/{step['provider_connections']}",
        "wall_s": round(step["wall_s"], 1),
    }


def local_figures(step: dict[str, Any]) -> dict[str, Any]:
    """Per N: calls answered correctly, refused, response latency, gaps and underruns."""
    calls = step["calls"]
    status = Counter(c["status"] for c in calls)
    answers = [s for c in calls for s in c.get("segments", [])[1:]]
    latencies = [s["latency_ms"] for s in answers if s["latency_ms"] is not None]
    every = [s for c in calls for s in c.get("segments", [])]
    gaps = [s["max_gap_ms"] for s in every if s["max_gap_ms"] is not None]
    return {
        "calls": len(calls),
        "correct": sum(bool(c.get("correct")) for c in calls),
        "refused": status["refused"],
        "failed": status["failed"],
        "wrong": sum(c["status"] == "completed" and not c.get("correct") for c in calls),
        "reasons": _reasons(calls),
        "answers": [
            [(line.get("intent"), (line.get("answer") or "")[:48]) for line in c.get("lines", [])]
            for c in calls
            if not c.get("correct")
        ],
        "response_latency_ms": {
            "median": round(statistics.median(latencies), 1) if latencies else None,
            "p95": _pct(np.asarray(latencies), 95),
            "missing": len(answers) - len(latencies),
        },
        "max_gap_ms": max(gaps) if gaps else None,
        "underruns": sum(s["underruns"] for s in every),
        "longest_underrun_ms": max((s["longest_underrun_ms"] for s in every), default=0.0),
        "server_cpu_s": round(step["server_cpu_s"], 2),
        "loadgen_cpu_s": round(step["loadgen_cpu_s"], 2),
        "rss_mib": {
            "idle": round(step["rss_idle_mib"], 1),
            "peak": round(step["rss_peak_mib"], 1),
            "after": round(step["rss_after_mib"], 1),
        },
        "per_call": calls,
    }


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def relay_targets(rows: dict[int, dict[str, dict[str, Any]]], workers: int | None) -> list:
    """``(target text, measured text, verdict)`` for issue 10's relay targets."""
    out = []
    at50 = rows.get(50, {})
    sb, naive = at50.get("switchboard"), at50.get("naive")
    cpu = sb["cpu_s_per_call_minute"] if sb else None
    out.append(
        (
            "<= 0.6 CPU-s per call-minute at 50 calls",
            "not run" if cpu is None else f"{cpu}",
            _verdict(None if cpu is None else cpu <= 0.6),
        )
    )
    ncpu = naive["cpu_s_per_call_minute"] if naive else None
    ratio = round(cpu / ncpu, 2) if cpu and ncpu else None
    out.append(
        (
            "<= 1.5x the naive relay's CPU at 50 calls",
            "not run" if ratio is None else f"{ratio}x ({cpu} / {ncpu})",
            _verdict(None if ratio is None else ratio <= 1.5),
        )
    )
    floor = at50.get("naive-trio")
    fcpu = floor["cpu_s_per_call_minute"] if floor else None
    out.append(
        (
            "(information) the naive relay on this stack, 50 calls",
            "not run" if not (cpu and fcpu) else f"{fcpu}; Switchboard {round(cpu / fcpu, 2)}x it",
            "n/a",
        )
    )
    at100 = rows.get(100, {}).get("switchboard")
    if at100 is None:
        out.append(("100 calls, --workers 2: >= 99 % audio, p99 < 20 ms", "not run", "n/a"))
    else:
        share, p99 = at100["audio_returned"] or 0.0, at100["echo_delay_ms"]["p99"]
        ok = share >= 0.99 and p99 is not None and p99 < 20
        note = "" if workers == 2 else f" (run with --workers {workers or 'unset'}, not 2)"
        out.append(
            (
                "100 calls, --workers 2: >= 99 % audio, p99 < 20 ms",
                f"{share:.1%}, p99 {p99} ms{note}",
                _verdict(ok) if workers == 2 else _verdict(ok) + " (other --workers)",
            )
        )
    sbs = [r["switchboard"] for _, r in sorted(rows.items()) if "switchboard" in r]
    if sbs:
        idle = sbs[0]["rss_mib"]["idle"]
        out.append(("idle RSS <= 120 MiB", f"{idle} MiB", _verdict(idle <= 120)))
        worst = max(sbs, key=lambda r: r["rss_kib_per_call"] or 0)
        per = worst["rss_kib_per_call"]
        out.append(
            (
                "<= 300 KB per relay call",
                f"{per} KiB at {worst['calls']} calls",
                _verdict(per is not None and per * 1.024 <= 300),
            )
        )
        after = max(r["rss_mib"]["after"] for r in sbs)
        out.append(
            (
                "RSS back within 10 % of idle after the calls",
                f"{after} MiB after vs {idle} MiB idle",
                _verdict(after <= 1.1 * idle),
            )
        )
    return out


def local_targets(rows: dict[int, dict[str, Any]]) -> list:
    out = []
    cap = 2 * CORES
    within = {n: r for n, r in rows.items() if n <= cap}
    past = {n: r for n, r in rows.items() if n > cap}
    if within:
        bad = [n for n, r in within.items() if r["correct"] != r["calls"]]
        out.append(
            (
                f"every call answered correctly up to {cap} calls",
                (f"all correct (N={sorted(within)})" if not bad else f"not at N={bad}"),
                _verdict(not bad),
            )
        )
        meds = {n: r["response_latency_ms"]["median"] for n, r in within.items()}
        worst = max((m for m in meds.values() if m is not None), default=None)
        out.append(
            (
                "median response latency <= 1.2 s",
                f"worst median {worst} ms",
                _verdict(worst is not None and worst <= 1200),
            )
        )
        gap = max((r["max_gap_ms"] or 0 for r in rows.values()), default=0)
        under = max((r["longest_underrun_ms"] for r in rows.values()), default=0)
        out.append(
            (
                "no agent-audio gap over 40 ms",
                f"max inter-arrival {gap} ms, longest underrun {under} ms",
                _verdict(gap <= 40 and under <= 40),
            )
        )
    if past:
        bad = [n for n, r in past.items() if r["wrong"] or r["failed"]]
        out.append(
            (
                f"past {cap} calls: refused, not degraded",
                "ok" if not bad else f"wrong/failed calls at N={bad}",
                _verdict(not bad),
            )
        )
    return out
