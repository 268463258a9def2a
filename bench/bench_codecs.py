"""Codec speed and latency, measured beside audioop and soxr in the same run.

    python bench/bench_codecs.py [--rounds N] [--json]

Per 20 ms frame: median CPU time (process time, batches of frames, the
implementations interleaved round-robin so machine noise hits all alike) and
the playout latency each adds (see ``switchboard.codecs._latency``).
Targets (issue 2): resampling at most 2x soxr's CPU per frame at a tenth of
its latency; G.711 at most 3 microseconds per 160-byte frame. Ratios, not
absolute times, are what carry across machines.

Needs the test extras (soxr; audioop-lts on Python >= 3.13).
"""

from __future__ import annotations

import argparse
import audioop
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr

from switchboard.codecs import Resampler, ulaw_decode, ulaw_encode
from switchboard.codecs._latency import playout_lag_ms

warnings.filterwarnings("ignore", category=DeprecationWarning)
BATCH = 200  # frames per timed batch


def cpu_us_per_frame(jobs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median over ``rounds`` batches of the CPU microseconds one call takes."""
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for job in jobs.values():  # warm up
        for _ in range(BATCH):
            job()
    for _ in range(rounds):
        for name, job in jobs.items():
            t0 = time.process_time_ns()
            for _ in range(BATCH):
                job()
            samples[name].append((time.process_time_ns() - t0) / BATCH / 1000)
    return {name: statistics.median(v) for name, v in samples.items()}


def resamplers(src: int, dst: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Fresh streaming converters, each as a chunk -> output function."""
    ours = Resampler(src, dst)
    sox = soxr.ResampleStream(src, dst, 1, dtype="int16", quality="HQ")
    state: list[Any] = [None]

    def ratecv(pcm: np.ndarray) -> np.ndarray:
        out, state[0] = audioop.ratecv(pcm.tobytes(), 2, 1, src, dst, state[0])
        return np.frombuffer(out, dtype=np.int16)

    return {
        "switchboard": ours.process,
        "soxr HQ": lambda pcm: sox.resample_chunk(pcm),
        "audioop.ratecv": ratecv,
    }


def bench_resampling(src: int, dst: int, rounds: int) -> dict[str, dict[str, float]]:
    frame = (np.random.default_rng(0).standard_normal(src // 50) * 3000).astype(np.int16)
    convs = resamplers(src, dst)
    cpu = cpu_us_per_frame({n: (lambda c=c: c(frame)) for n, c in convs.items()}, rounds)
    lag = {n: playout_lag_ms(c, src, dst) for n, c in resamplers(src, dst).items()}
    return {n: {"cpu_us_per_frame": cpu[n], "latency_ms": lag[n]} for n in convs}


def bench_g711(rounds: int) -> dict[str, float]:
    frame = bytes(np.random.default_rng(1).integers(0, 256, 160, dtype=np.uint8))
    pcm = ulaw_decode(frame)
    pcm_bytes = pcm.tobytes()
    return cpu_us_per_frame(
        {
            "switchboard ulaw_decode": lambda: ulaw_decode(frame),
            "switchboard ulaw_encode": lambda: ulaw_encode(pcm),
            "audioop.ulaw2lin": lambda: audioop.ulaw2lin(frame, 2),
            "audioop.lin2ulaw": lambda: audioop.lin2ulaw(pcm_bytes, 2),
        },
        rounds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="timed batches per job (default 60)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"resampling": {}, "g711_us_per_frame": bench_g711(args.rounds)}
    verdicts = []
    for src, dst in [(8000, 24000), (24000, 8000)]:
        r = bench_resampling(src, dst, args.rounds)
        ours, sox = r["switchboard"], r["soxr HQ"]
        cpu_ratio = ours["cpu_us_per_frame"] / sox["cpu_us_per_frame"]
        lag_ratio = ours["latency_ms"] / sox["latency_ms"]
        report["resampling"][f"{src}->{dst}"] = {
            **r,
            "cpu_ratio_vs_soxr": cpu_ratio,
            "latency_ratio_vs_soxr": lag_ratio,
        }
        verdicts.append((f"{src}->{dst} CPU <= 2x soxr", cpu_ratio <= 2.0, f"{cpu_ratio:.2f}x"))
        verdicts.append((f"{src}->{dst} latency <= soxr/10", lag_ratio <= 0.1, f"{lag_ratio:.3f}x"))
    for name in ("switchboard ulaw_decode", "switchboard ulaw_encode"):
        us = report["g711_us_per_frame"][name]
        verdicts.append((f"{name} <= 3 us/frame", us <= 3.0, f"{us:.2f} us"))
    report["targets"] = {name: {"met": ok, "value": v} for name, ok, v in verdicts}

    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}, soxr {soxr.__version__}")
    for pair, r in report["resampling"].items():
        print(f"\nResampling {pair} Hz, one 20 ms frame per call")
        print(f"  {'':16} {'CPU us/frame':>13} {'latency ms':>11}")
        for name in ("switchboard", "soxr HQ", "audioop.ratecv"):
            print(f"  {name:16} {r[name]['cpu_us_per_frame']:13.2f} {r[name]['latency_ms']:11.2f}")
    print("\nG.711 mu-law, one 160-byte frame (20 ms at 8 kHz) per call")
    for name, us in report["g711_us_per_frame"].items():
        print(f"  {name:26} {us:6.2f} us")
    print("\nTargets")
    for name, ok, value in verdicts:
        print(f"  [{'met' if ok else 'MISSED'}] {name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
