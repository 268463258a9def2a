"""Issue 10's load benchmark: simulated Twilio callers against the runtime and references.

    python bench/bench_load.py [--steps 10,25,50,100,200] [--seconds 30] [--clients 2]
                               [--workers N] [--server-arg ARG]... [--pipecat-python PY]
                               [--no-naive] [--recording on|off|both] [--fleet] [--json]
    python bench/bench_load.py --mode local [--steps 1,2,4,8]
    python bench/bench_load.py --soak-minutes 10 --soak-calls N [--seconds 30]

Relay mode (default): ``switchboard serve --mode openai-realtime`` relays
calls to an OpenAI Realtime fake that echoes every appended chunk at once
(``_load_echo.py``; G.711 mu-law passes through untouched), and, in the same
run and step by step, a naive asyncio relay does the same job
(``_load_naive.py``), and so does the same naive relay on Switchboard's own
libraries (``_load_naive_trio.py``: hypercorn, wsproto, trio-websocket,
Trio; the floor any relay on this stack pays, so the runtime's own share is
the difference). Pipecat's Twilio echo pipeline is a further column
(``_load_pipecat.py``) when ``pipecat-ai``, ``fastapi`` and ``uvicorn`` are
importable by ``--pipecat-python`` (default: this interpreter; Pipecat is
never a dependency of the project); otherwise the report says why it was
skipped. One embedded PostgreSQL serves the whole run. Per step of N calls
(``--clients`` caller processes, ``_load_caller.py``; calls ramp up over
min(5 s, N x 50 ms) and each streams ``--seconds``): calls completed /
refused / failed, share of the audio returned, echo delay p50/p95/p99 matched
by content, server CPU-s per call-minute (the target's process tree less
PostgreSQL, whose CPU is given apart), RSS idle / peak / 5 s after, whether
permessage-deflate was negotiated on each leg, and the load generator's own
CPU and send lateness, so a reader sees when the load generator is the
bottleneck.

Local mode: N concurrent calls to the example agent on the embedded ``local``
provider, each saying "what are your opening hours" then "thank you goodbye"
(``/work/shared/data/speech/synthetic`` or eSpeak NG), judged from the call's
logged events (``_load_speech.py``).

Soak: a steady ``--soak-calls`` relay calls of ``--seconds`` each, redialled
as they end, for ``--soak-minutes``; the runtime's RSS and open fds sampled
every 10 s; their slope per hour by least squares over the second half
(the first minutes are warm-up).

``--recording both`` runs each step twice on the runtime, the example agent
recording its calls (column ``switchboard``) and not
(``switchboard-norec``), and prints the recording's CPU cost per call as a
ratio (issue 12's budget: under 10 % more); ``on`` (the default, as the
example agent ships) and ``off`` run one of them.

``--fleet`` adds a column ``fleet``: two more instances on the same database
behind Debian's HAProxy with ``deploy/haproxy.cfg`` (``--workers`` each), the
calls placed through the balancer, so calls held and echo delay read beside the
single instance's (``switchboard``, called directly) in the same step; its CPU
and RSS are both instances' and HAProxy's together.

Targets are issue 10's; each prints as met or MISSED. The agent's
``idle_timeout_seconds`` is raised to an hour for relay runs: the echo fake
reports caller speech once, and calls must last the whole step.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _load_report import local_figures, local_targets, relay_figures, relay_targets
from _load_run import START_LEAD_S, Rig

SPEECH = Path("/work/shared/data/speech/synthetic")
LINES = (("hours.wav", "what are your opening hours"), ("bye.wav", "thank you goodbye"))


def pipecat_status(python: str) -> str | None:
    """None when ``python`` can run the Pipecat column; otherwise why it is skipped.

    ``pipecat`` on PyPI is also an unrelated data-logging package: the
    distribution must be ``pipecat-ai``, with its Twilio serializer, FastAPI
    transport, ``fastapi`` and ``uvicorn`` importable.
    """
    import subprocess

    probe = (
        "import importlib.metadata as m; v = m.version('pipecat-ai'); "
        "import pipecat.serializers.twilio, pipecat.transports.websocket.fastapi, uvicorn; "
        "print(v)"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"skipped: pipecat-ai cannot run with {python} ({last})"
    return None


def ulaw_wav_data(path: Path) -> bytes:
    """The ``data`` chunk of a WAV file (RIFF: chunk id, little-endian size, body)."""
    blob = path.read_bytes()
    i = 12
    while i + 8 <= len(blob):
        size = int.from_bytes(blob[i + 4 : i + 8], "little")
        if blob[i : i + 4] == b"data":
            return blob[i + 8 : i + 8 + size]
        i += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


def caller_lines() -> list[bytes]:
    if all((SPEECH / name).exists() for name, _ in LINES):
        return [ulaw_wav_data(SPEECH / name) for name, _ in LINES]
    from switchboard.actors.local import tts

    return [tts.synthesize_ulaw(text) for _, text in LINES]


def expected_answers() -> list[tuple[str, str]]:
    """(intent, the start of its reply) per line, from the example agent."""
    from switchboard.orchestrator.agent_file import load_agent_file
    from switchboard.orchestrator.server import example_agent_path

    agent = load_agent_file(example_agent_path())
    replies = {i.name: i.reply.split("{result}")[0] for i in agent.intents}
    return [(name, replies[name]) for name in ("hours", "goodbye")]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_relay(args: argparse.Namespace, rig: Rig) -> dict[str, Any]:
    rows: dict[int, dict[str, dict[str, Any]]] = {}
    targets = [
        "switchboard",
        *(["fleet"] if args.fleet else []),
        *([] if args.no_naive else ["naive", "naive-trio"]),
        *rig.extra_targets,
    ]
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.recording]
    runs: dict[tuple[int, str], list[float]] = {}
    for index, n in enumerate(args.steps):
        rows.setdefault(n, {})
        # Both ways: the order alternates step by step, so neither side always runs first
        # (warm-up, the machine's other load) when a step size is repeated.
        order = modes if index % 2 == 0 else modes[::-1]
        for target in targets:
            for recording in order if target == "switchboard" else [True]:
                name = target if recording or target != "switchboard" else NOREC
                if target == "switchboard":
                    rig.set_recording(recording)
                log(f"step {n} calls: {name} ...")
                raw = rig.step(target, n, args.clients, {"seconds": args.seconds})
                figures = relay_figures(raw)
                runs.setdefault((n, name), []).append(figures["cpu_s_per_call_minute"])
                rows[n][name] = figures
                log("  " + brief(figures))
    return {
        "steps": rows,
        "targets": relay_targets(rows, args.workers),
        "recording_cost": recording_cost(runs),
    }


NOREC = "switchboard-norec"


def recording_cost(runs: dict[tuple[int, str], list[float]]) -> dict[int, dict[str, Any]]:
    """Per step size run both ways: CPU-s per call-minute recording and not (the mean
    over the runs of that size), and their ratio."""
    cost = {}
    for (n, name), on_runs in runs.items():
        off_runs = runs.get((n, NOREC))
        if name != "switchboard" or not off_runs:
            continue
        on, off = sum(on_runs) / len(on_runs), sum(off_runs) / len(off_runs)
        ratio = round(on / off, 3) if on and off else None
        cost[n] = {
            "recording": round(on, 3),
            "not_recording": round(off, 3),
            "ratio": ratio,
            "runs": len(on_runs),
        }
    return cost


def brief(r: dict[str, Any]) -> str:
    d = r["echo_delay_ms"]
    return (
        f"{r['completed']}/{r['calls']} completed, {r['refused']} refused, "
        f"audio {r['audio_returned']}, delay p50/p99 {d['p50']}/{d['p99']} ms, "
        f"{r['cpu_s_per_call_minute']} CPU-s/call-min"
    )


def run_local(args: argparse.Namespace, rig: Rig) -> dict[str, Any]:
    extra = {
        "kind": "speech",
        "lines": caller_lines(),
        "expected": expected_answers(),
        "ramp_s": 0.0,
    }
    rows = {}
    for n in args.steps:
        log(f"local: {n} concurrent calls ...")
        rows[n] = local_figures(rig.step("switchboard", n, args.clients, extra))
        log(f"  {rows[n]['correct']}/{n} correct, latency {rows[n]['response_latency_ms']}")
    return {"steps": rows, "targets": local_targets(rows)}


def run_soak(args: argparse.Namespace, rig: Rig) -> dict[str, Any]:
    tree = rig.tree("switchboard")
    samples: list[tuple[float, float, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - t0, tree.rss_mib(), tree.fds()))
            stop.wait(10.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    end_at = time.monotonic() + 2.5 + 60 * args.soak_minutes
    extra = {"kind": "soak", "seconds": args.seconds, "end_at": end_at, "ramp_s": args.seconds}
    try:
        raw = rig.step("switchboard", args.soak_calls, args.clients, extra)
    finally:
        stop.set()
        sampler.join()
    placed: dict[str, int] = {}
    for slot in raw["calls"]:
        for status, count in slot["status"].items():
            placed[status] = placed.get(status, 0) + count
    raw["calls"] = [_flatten(slot) for slot in raw["calls"]]
    figures = relay_figures(raw)
    # The slope is taken over the second half of the soak: the first minutes warm up (a
    # worker's lazy imports and caches, allocator arenas), and the last sample may fall
    # after the lines stopped dialling.
    steady_from = max(START_LEAD_S + args.seconds + 10.0, 30.0 * args.soak_minutes)
    dialling_until = end_at - t0 - args.seconds  # a line places no call that would end later
    steady = [s for s in samples if steady_from <= s[0] <= dialling_until]
    return {
        "lines": args.soak_calls,
        "calls_placed": placed,
        "figures": figures,
        "memory": slopes(steady if len(steady) >= 3 else samples),
        "samples": samples,
    }


def _flatten(slot: dict[str, Any]) -> dict[str, Any]:
    status = max(slot["status"], key=slot["status"].get) if slot["status"] else "failed"
    reason = ", ".join(f"{k} x{v}" for k, v in slot["reasons"].items())[:200]
    return {**slot, "status": status, "reason": reason, "deflate": None, "placed": slot["status"]}


def slopes(samples: list[tuple[float, float, int]]) -> dict[str, Any]:
    """Least-squares slopes of RSS (MB per hour) and fds (per hour), start and end values."""
    import numpy as np

    if len(samples) < 2:
        return {}
    t, rss, fds = (np.asarray(column, dtype=float) for column in zip(*samples, strict=True))
    hours = t / 3600.0
    return {
        "rss_mib_start": round(rss[0], 1),
        "rss_mib_end": round(rss[-1], 1),
        "rss_mb_per_hour": round(float(np.polyfit(hours, rss * 1.048576, 1)[0]), 2),
        "fds_start": int(fds[0]),
        "fds_end": int(fds[-1]),
        "fds_per_hour": round(float(np.polyfit(hours, fds, 1)[0]), 1),
    }


def print_relay(report: dict[str, Any]) -> None:
    cols = [
        (
            "calls completed / refused / failed",
            lambda r: f"{r['completed']}/{r['refused']}/{r['failed']}",
        ),
        ("audio returned", lambda r: f"{r['audio_returned']}"),
        ("echo delay p50/p95/p99 ms", lambda r: "{p50}/{p95}/{p99}".format(**r["echo_delay_ms"])),
        ("server CPU-s per call-minute", lambda r: f"{r['cpu_s_per_call_minute']}"),
        ("PostgreSQL CPU-s per call-minute", lambda r: f"{r['postgres_cpu_s_per_call_minute']}"),
        (
            "events (KiB) per call-minute",
            lambda r: f"{r['events_per_call_minute']} ({r['event_kib_per_call_minute']})",
        ),
        ("RSS MiB idle/peak/after", lambda r: "{idle}/{peak}/{after}".format(**r["rss_mib"])),
        ("RSS KiB per call", lambda r: f"{r['rss_kib_per_call']}"),
        (
            "deflate caller / provider leg",
            lambda r: f"{r['caller_leg_deflate']} / {r['provider_leg_deflate']}",
        ),
        (
            "loadgen CPU-s (share of 2 cores)",
            lambda r: f"{r['loadgen_cpu_s']} ({r['loadgen_cpu_share']:.0%})",
        ),
        (
            "loadgen send late p99/max ms",
            lambda r: "{p99}/{max}".format(**r["loadgen_send_late_ms"]),
        ),
        ("echo fake CPU-s", lambda r: f"{r['echo_fake_cpu_s']}"),
    ]
    for n, row in report["steps"].items():
        names = list(row)
        print(f"\n{n} calls | " + " | ".join(names))
        for label, fmt in cols:
            print(f"  {label:34} | " + " | ".join(fmt(row[t]) for t in names))
        for t in names:
            if row[t]["reasons"]:
                print(f"  {t} reasons: {row[t]['reasons']}")


def print_local(report: dict[str, Any]) -> None:
    print(
        "\nN | correct | refused | failed | latency median/p95 ms | max gap ms"
        " | underruns (longest ms) | server CPU-s | RSS idle/peak/after MiB"
    )
    for n, r in report["steps"].items():
        lat = r["response_latency_ms"]
        print(
            f"{n} | {r['correct']}/{r['calls']} | {r['refused']} | {r['failed']} | "
            f"{lat['median']}/{lat['p95']} | {r['max_gap_ms']} | "
            f"{r['underruns']} ({r['longest_underrun_ms']}) | {r['server_cpu_s']} | "
            "{idle}/{peak}/{after}".format(**r["rss_mib"])
        )
        if r["reasons"]:
            print(f"   reasons: {r['reasons']}; answers: {r['answers']}")


def print_soak(soak: dict[str, Any], args: argparse.Namespace) -> None:
    f, m = soak["figures"], soak["memory"]
    d = f["echo_delay_ms"]
    print(
        f"soak: {soak['lines']} lines of {args.seconds:g} s calls for {args.soak_minutes:g} min;"
        f" calls placed {soak['calls_placed']}"
    )
    print(f"  audio returned {f['audio_returned']}, echo delay p50/p99 {d['p50']}/{d['p99']} ms")
    print(f"  server CPU-s per call-minute {f['cpu_s_per_call_minute']}")
    if m:
        print(
            f"  RSS {m['rss_mib_start']} -> {m['rss_mib_end']} MiB, {m['rss_mb_per_hour']} MB/h;"
            f" fds {m['fds_start']} -> {m['fds_end']}, {m['fds_per_hour']} per hour"
            " (least squares over the second half, samples every 10 s)"
        )
    if f["reasons"]:
        print(f"  reasons: {f['reasons']}")


def print_targets(targets: list[tuple[str, str, str]]) -> None:
    print("\ntargets (issue 10):")
    for text, measured, verdict in targets:
        print(f"  {text:52} {measured:40} {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("relay", "local"), default="relay")
    parser.add_argument("--steps", default=None, help="comma-separated call counts")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each call (s)")
    parser.add_argument("--clients", type=int, default=2, help="caller processes")
    parser.add_argument("--workers", type=int, default=None, help="passed to serve when given")
    parser.add_argument("--server-arg", action="append", default=[], help="passed to serve")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive relay column")
    parser.add_argument(
        "--recording",
        choices=("on", "off", "both"),
        default="on",
        help="the runtime's calls recorded (the example agent's default), not, or both ways",
    )
    parser.add_argument(
        "--pipecat-python",
        default=sys.executable,
        help="interpreter with pipecat-ai, fastapi and uvicorn for the Pipecat column",
    )
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    parser.add_argument("--soak-calls", type=int, default=0)
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="add two instances behind HAProxy (deploy/haproxy.cfg) as the column 'fleet'",
    )
    parser.add_argument("--json", action="store_true", help="print every figure as JSON")
    args = parser.parse_args(argv)
    default = "1,2,4,8" if args.mode == "local" else "10,25,50,100,200"
    args.steps = [int(s) for s in (args.steps or default).split(",") if s]
    if args.soak_minutes and (args.mode != "relay" or args.soak_calls <= 0):
        parser.error("--soak-minutes needs relay mode and --soak-calls N")
    report: dict[str, Any] = {"mode": args.mode, "seconds": args.seconds, "workers": args.workers}
    pipecat = None
    if args.mode == "relay" and not args.soak_minutes:
        report["pipecat"] = pipecat_status(args.pipecat_python)
        pipecat = args.pipecat_python if report["pipecat"] is None else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what the rig started
    try:
        with Rig(args.mode, args.workers, args.server_arg, pipecat, fleet=args.fleet) as rig:
            if args.soak_minutes:
                report["soak"] = run_soak(args, rig)
            elif args.mode == "relay":
                report.update(run_relay(args, rig))
            else:
                report.update(run_local(args, rig))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    if "soak" in report:
        print_soak(report["soak"], args)
        return 0
    if args.mode == "relay":
        print(f"Pipecat column: {report['pipecat'] or 'run'}")
        print_relay(report)
        for n, c in report["recording_cost"].items():
            verdict = "met" if c["ratio"] is not None and c["ratio"] < 1.10 else "MISSED"
            print(
                f"\nrecording cost at {n} calls ({c['runs']} runs each way): "
                f"{c['recording']} vs {c['not_recording']} CPU-s per call-minute, "
                f"ratio {c['ratio']} (< 1.10: {verdict})"
            )
    else:
        print_local(report)
    print_targets(report["targets"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
