"""The processes of ``bench_load.py`` and one measured step against one of them.

:class:`Rig` starts, for the whole run: one embedded PostgreSQL (``pgserver``,
as ``switchboard.orchestrator.embedded_pg`` starts it), the echo fake
(``_load_echo.py``), the naive relay (``_load_naive.py``), Pipecat's echo
pipeline when an interpreter with ``pipecat-ai`` is given (``_load_pipecat.py``), and
``switchboard serve`` (``--workers`` only when given, so the bench runs on
code without that flag), each its own process. :meth:`Rig.step` runs N calls
from ``clients`` client processes against one target and reads, from
``/proc``, the target's CPU (its process tree less ``postgres``), PostgreSQL's
CPU, the echo fake's CPU, and the target's RSS: idle before the step, peak
during it, and :data:`SETTLE_S` after the calls end.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from _load_procs import PeakRss, ProcessTree, ProcessTrees, postmaster_pid

BENCH = Path(__file__).resolve().parent
HAPROXY_CFG = BENCH.parent / "deploy" / "haproxy.cfg"
FLEET = ("fleet-a", "fleet-b", "haproxy")
"""The fleet target's processes: two instances behind deploy/haproxy.cfg."""
AUTH_TOKEN = "load-bench-token"
NUMBER = "+15005550006"  # the example agent's number
SETTLE_S = 5.0
START_LEAD_S = 2.5  # client processes start (imports) before the first call is due
IDLE_TIMEOUT_S = 3600  # the bench agent's: the echo fake's caller never "speaks" again


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, proc.args))} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


class Rig:
    """Everything a run needs; a context manager that stops what it started."""

    def __init__(
        self,
        mode: str,
        workers: int | None,
        server_args: list[str],
        pipecat: str | None = None,
        *,
        fleet: bool = False,
    ) -> None:
        self.mode = mode  # "relay" or "local"
        self.fleet = fleet  # a "fleet" target: two instances behind HAProxy
        self.pipecat = pipecat  # the interpreter for the Pipecat column, or None
        self.extra_targets: list[str] = []
        self.workers = workers
        self.server_args = server_args
        self.recording = True  # the bench agent records its calls (the example agent does)
        self._stack = contextlib.ExitStack()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}

    def __enter__(self) -> Rig:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed by the stack)
        self._stack.callback(log.close)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs[name] = proc

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        self._stack.callback(stop)

    def _start(self) -> None:
        from switchboard.orchestrator.embedded_pg import start_embedded

        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="load-")))
        pg = start_embedded(self.tmp / "pg")
        self._stack.callback(pg.stop)
        self.dsn = pg.uri
        pid = postmaster_pid(self.tmp / "pg" / "pgdata")
        self.postgres = ProcessTree(pid) if pid else None
        py = sys.executable
        echo_port = free_port()
        self._spawn("echo", [py, str(BENCH / "_load_echo.py"), "--port", str(echo_port)])
        self.urls["echo"] = f"http://127.0.0.1:{echo_port}"
        upstream = f"ws://127.0.0.1:{echo_port}/v1/realtime"
        if self.mode == "relay":
            naive_port = free_port()
            argv = [py, str(BENCH / "_load_naive.py"), "--port", str(naive_port)]
            self._spawn("naive", [*argv, "--upstream", upstream])
            self.urls["naive"] = f"ws://127.0.0.1:{naive_port}/"
            floor_port = free_port()
            argv = [py, str(BENCH / "_load_naive_trio.py"), "--port", str(floor_port)]
            self._spawn("naive-trio", [*argv, "--upstream", upstream])
            self.urls["naive-trio"] = f"ws://127.0.0.1:{floor_port}/"
        if self.mode == "relay" and self.pipecat:
            pipecat_port = free_port()
            argv = [self.pipecat, str(BENCH / "_load_pipecat.py"), "--port", str(pipecat_port)]
            self._spawn("pipecat", argv)
            wait_http(f"http://127.0.0.1:{pipecat_port}/health", 120, self.procs["pipecat"])
            self.urls["pipecat"] = f"ws://127.0.0.1:{pipecat_port}/ws"
            self.extra_targets.append("pipecat")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": self.dsn,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "PUBLIC_URL": base,
            "OPENAI_REALTIME_URL": upstream,
        }
        self._serve("switchboard", port, env)
        if self.fleet:
            self._start_fleet(env)
        wait_http(self.urls["echo"] + "/stats", 30, self.procs["echo"])
        if self.mode == "relay":
            self._apply_bench_agent()
        creds = json.loads(
            (self.tmp / "serve" / "switchboard" / "dev-credentials.json").read_text()
        )
        self.api_key: str = creds["api_key"]

    def _serve(self, name: str, port: int, env: dict[str, str]) -> None:
        """``switchboard serve`` as ``name`` on ``port``; returns once /health answers."""
        base = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "switchboard.orchestrator.cli", "serve"]
        argv += ["--port", str(port), "--data-dir", str(self.tmp / "serve" / name)]
        argv += ["--mode", "openai-realtime" if self.mode == "relay" else "local"]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        self._spawn(name, argv + self.server_args, env)
        self.urls[name] = base
        try:
            wait_http(base + "/health", 180, self.procs[name])
        except RuntimeError as exc:
            tail = (self.tmp / f"{name}.log").read_text(errors="replace")[-600:]
            raise RuntimeError(f"{exc}; its output ends with:\n{tail}") from None

    def _start_fleet(self, env: dict[str, str]) -> None:
        """Two more instances on the same database behind HAProxy (``deploy/haproxy.cfg``),
        Twilio's URL being the balancer's: the ``fleet`` target."""
        haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
        if haproxy is None:
            raise RuntimeError("--fleet needs HAProxy (apt-get install haproxy)")
        front = free_port()
        self.urls["fleet"] = f"http://127.0.0.1:{front}"
        ports = {"fleet-a": free_port(), "fleet-b": free_port()}
        for name, port in ports.items():
            self._serve(name, port, {**env, "PUBLIC_URL": self.urls["fleet"]})
        balancer_env = {
            **os.environ,
            "LISTEN": f"127.0.0.1:{front}",
            "SWITCHBOARD_A": f"127.0.0.1:{ports['fleet-a']}",
            "SWITCHBOARD_B": f"127.0.0.1:{ports['fleet-b']}",
        }
        self._spawn("haproxy", [haproxy, "-db", "-f", str(HAPROXY_CFG)], balancer_env)
        wait_http(self.urls["fleet"] + "/ready", 30, self.procs["haproxy"])

    def set_recording(self, enabled: bool) -> None:
        """Record the bench agent's next calls, or not (applied to the agent row: the
        server reads it per call)."""
        if enabled != self.recording:
            self.recording = enabled
            self._apply_bench_agent()

    def _apply_bench_agent(self) -> None:
        """The example agent, openai-realtime first, with an idle timeout longer than a step
        (recording as :attr:`recording` says)."""
        from switchboard.orchestrator.agent_file import load_agent_file
        from switchboard.orchestrator.call_chain import with_chain_first
        from switchboard.orchestrator.db import Database
        from switchboard.orchestrator.server import example_agent_path
        from switchboard.orchestrator.store import Store

        agent = with_chain_first(load_agent_file(example_agent_path()), ["openai-realtime"])
        db = Database(self.dsn)
        try:
            recording = replace(agent.recording, enabled=self.recording)
            bench = replace(agent, idle_timeout_seconds=IDLE_TIMEOUT_S, recording=recording)
            Store(db).apply_agent(bench)
        finally:
            db.close()

    def tree(self, target: str) -> ProcessTree | ProcessTrees:
        if target == "fleet":
            return ProcessTrees(ProcessTree(self.procs[name].pid) for name in FLEET)
        return ProcessTree(self.procs[target].pid, exclude={"postgres"})

    def echo_stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.urls["echo"] + "/stats", timeout=5) as response:
            stats: dict[str, int] = json.loads(response.read())
            return stats

    def plans(self, target: str, n: int, clients: int, extra: dict[str, Any]) -> list[dict]:
        """Split ``n`` calls over ``clients`` processes, starts spread over ``ramp_s``."""
        t0 = time.monotonic() + START_LEAD_S
        ramp_s = extra.get("ramp_s", min(5.0, 0.05 * n))
        starts = [t0 + ramp_s * i / max(1, n) for i in range(n)]
        common: dict[str, Any] = {
            "base_url": self.urls["fleet" if target == "fleet" else "switchboard"],
            "token": AUTH_TOKEN,
            "to_number": NUMBER,
            "api_key": getattr(self, "api_key", None),
            **extra,
        }
        if target in ("naive", "naive-trio", "pipecat"):
            common["stream_url"] = self.urls[target]
        plans = []
        for c in range(min(clients, n)):
            mine = starts[c::clients]
            id_base = (int(time.time() * 1000) % 100000) * 1000 + c * 10000
            plans.append({**common, "starts": mine, "id_base": id_base})
        return plans

    def step(self, target: str, n: int, clients: int, extra: dict[str, Any]) -> dict[str, Any]:
        """Run ``n`` calls against ``target``; the raw per-call results and the measures."""
        from _load_caller import client_main

        tree = self.tree(target)
        echo = ProcessTree(self.procs["echo"].pid)
        idle_mib = tree.rss_mib()
        cpu0, pg0, echo0 = tree.cpu_s(), self._pg_cpu(), echo.cpu_s()
        stats0, events0 = self.echo_stats(), self._events_written()
        t = time.monotonic()
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        workers = [
            ctx.Process(target=client_main, args=(p, queue))
            for p in self.plans(target, n, clients, extra)
        ]
        with PeakRss(tree) as peak:
            for w in workers:
                w.start()
            outputs = [self._result(queue, workers) for _ in workers]
            for w in workers:
                w.join()
            wall_s = time.monotonic() - t
            cpu1, pg1, echo1 = tree.cpu_s(), self._pg_cpu(), echo.cpu_s()
        stats1 = self.echo_stats()
        time.sleep(SETTLE_S)  # the calls' last events are written meanwhile
        events1 = self._events_written()
        return {
            "target": target,
            "calls": [c for o in outputs for c in o["calls"]],
            "wall_s": wall_s,
            "server_cpu_s": cpu1 - cpu0,
            "postgres_cpu_s": pg1 - pg0,
            "echo_cpu_s": echo1 - echo0,
            "loadgen_cpu_s": sum(o["cpu_s"] for o in outputs),
            "rss_idle_mib": idle_mib,
            "rss_peak_mib": peak.peak_mib,
            "rss_after_mib": tree.rss_mib(),
            "provider_deflate": stats1["deflate"] - stats0["deflate"],
            "provider_connections": stats1["connections"] - stats0["connections"],
            "events_written": events1[0] - events0[0],
            "event_bytes_written": events1[1] - events0[1],
        }

    @staticmethod
    def _result(queue: Any, workers: list[Any]) -> dict[str, Any]:
        """The next client's result; a client that died without one gives an empty result."""
        import queue as queues

        while True:
            try:
                result: dict[str, Any] = queue.get(timeout=5)
                return result
            except queues.Empty:
                if all(not w.is_alive() for w in workers):
                    return {"calls": [], "cpu_s": 0.0, "wall_s": 0.0}

    def _pg_cpu(self) -> float:
        return self.postgres.cpu_s() if self.postgres else 0.0

    def _events_written(self) -> tuple[int, int]:
        """Rows in ``call_events`` and their bytes as stored (``pg_column_size``)."""
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(
                "select count(*), coalesce(sum(pg_column_size(e.*)), 0) from call_events e"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
