"""What recording costs per call-minute, beside the mu-law decode of the same audio.

    python bench/bench_recording.py [--rounds N] [--json]

One call-minute of both tracks as a phone call makes it: 8 kHz G.711 mu-law, 50
frames of 160 bytes a second each way (6000 frames), on a :class:`RecordingTape`
taken once a second (60 flushes of 100 records). Measured, in CPU ms per
call-minute (process time; the jobs interleaved round-robin, the median of the
rounds so machine noise hits all alike):

- ``reference_ulaw_decode``: the project's mu-law decode of the same 6000 frames,
  frame by frame (work every phone call does anyway);
- ``tape``: the hot path's share: one ``tape.caller``/``tape.agent`` append per frame;
- ``seal``: the writer's share, off the audio path: ``take`` and
  ``SegmentWriter.seal`` once a second (packing and AES-256-GCM);
- ``open``: reading it back (``read_records``) and rendering the stereo WAV, which a
  playback request pays, not the call.

Ratios to the reference, and the seal's share of one core, carry across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from switchboard.actors.tape import RecordingTape
from switchboard.codecs import ulaw_decode
from switchboard.codecs.recording_format import (
    Kind,
    Record,
    RecordingHeader,
    SegmentWriter,
    TrackFormat,
    WrappedKey,
    read_records,
)
from switchboard.codecs.wav import WavSource, track_layout

SECONDS = 60
FRAMES_PER_SECOND = 50
FRAME_BYTES = 160

CALLER = [os.urandom(FRAME_BYTES) for _ in range(SECONDS * FRAMES_PER_SECOND)]
AGENT = [os.urandom(FRAME_BYTES) for _ in range(SECONDS * FRAMES_PER_SECOND)]
DATA_KEY = os.urandom(32)


def header() -> RecordingHeader:
    return RecordingHeader(
        session_id="6f1c2a1e-3c4b-4d5e-8f90-0a1b2c3d4e5f",
        tenant_id="0b9d5a52-8a86-4b1f-a0e7-5f8f0f7a2c11",
        caller=TrackFormat("pcmu", 8000),
        agent=TrackFormat("pcmu", 8000),
        started_at="2026-12-04T15:00:00+00:00",
        key=WrappedKey("keyring", "k1"),
    )


def reference_ulaw_decode() -> None:
    for caller, agent in zip(CALLER, AGENT, strict=True):
        ulaw_decode(caller)
        ulaw_decode(agent)


def _new_tape() -> tuple[RecordingTape, list[float]]:
    clock = [0.0]
    tape = RecordingTape(lambda: clock[0])
    return tape, clock


def tape_only() -> None:
    tape, clock = _new_tape()
    for i, (caller, agent) in enumerate(zip(CALLER, AGENT, strict=True)):
        clock[0] = i * 20.0
        tape.caller(caller)
        tape.agent(agent)


def _taken_flushes() -> list[list[Record]]:
    tape, clock = _new_tape()
    flushes = []
    for i, (caller, agent) in enumerate(zip(CALLER, AGENT, strict=True)):
        clock[0] = i * 20.0
        tape.caller(caller)
        tape.agent(agent)
        if (i + 1) % FRAMES_PER_SECOND == 0:
            flushes.append(tape.take())
    return flushes


FLUSHES = _taken_flushes()


def seal() -> bytes:
    writer = SegmentWriter(DATA_KEY, header())
    parts = [writer.start()]
    for flush in FLUSHES[:-1]:
        parts.append(writer.seal(flush))
    parts.append(writer.seal(FLUSHES[-1], last=True))
    return b"".join(parts)


BLOB = seal()


def open_and_render() -> None:
    _, records = read_records(BLOB, DATA_KEY)
    source = WavSource(
        track_layout(records, Kind.CALLER_AUDIO, 8000, "pcmu"),
        track_layout(records, Kind.AGENT_AUDIO, 8000, "pcmu"),
    )
    for _ in source.iter_range(0, source.size):
        pass


def cpu_ms(jobs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median over ``rounds`` of each job's CPU ms, the jobs interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for job in jobs.values():
        job()  # warm up
    for _ in range(rounds):
        for name, job in jobs.items():
            t0 = time.process_time_ns()
            job()
            samples[name].append((time.process_time_ns() - t0) / 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ms = cpu_ms(
        {
            "reference_ulaw_decode": reference_ulaw_decode,
            "tape": tape_only,
            "seal": seal,
            "open": open_and_render,
        },
        args.rounds,
    )
    ref = ms["reference_ulaw_decode"]
    result = {
        "call_minute": {"frames": 2 * len(CALLER), "audio_bytes": 2 * len(CALLER) * FRAME_BYTES},
        "sealed_bytes": len(BLOB),
        "cpu_ms_per_call_minute": ms,
        "ratio_to_reference": {k: v / ref for k, v in ms.items()},
        "seal_share_of_one_core_pct": 100 * ms["seal"] / (SECONDS * 1000),
        "tape_plus_seal_share_of_one_core_pct": 100 * (ms["seal"] + ms["tape"]) / (SECONDS * 1000),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"one call-minute: {result['call_minute']['frames']} frames, "
        f"{result['call_minute']['audio_bytes']} audio bytes -> {len(BLOB)} sealed bytes"
    )
    for name, value in ms.items():
        print(f"  {name:24s} {value:8.2f} CPU ms  ({value / ref:5.2f}x the mu-law decode)")
    print(
        f"  sealing uses {result['seal_share_of_one_core_pct']:.3f} % of one core per call "
        f"(tape + seal {result['tape_plus_seal_share_of_one_core_pct']:.3f} %)"
    )


if __name__ == "__main__":
    main()
