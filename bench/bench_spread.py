"""How evenly ``serve --workers N`` spreads connections and calls over its workers.

    python bench/bench_spread.py [--workers 2] [--connections 200] [--calls 40] [--json]

Part 1, the product: starts ``switchboard serve --workers N --port 0`` on an
embedded PostgreSQL in a temporary folder and counts, by the worker that
answered (``X-Switchboard-Worker``):

- ``--connections`` HTTP requests, each on a new connection, one after another;
- the same, 20 at a time;
- ``--calls`` ``/v1/realtime`` calls opened one after another and held open
  (the distribution of live calls over the workers).

Part 2, the choice of socket: two minimal accept loops (Python processes,
``selectors`` + non-blocking ``accept``, answering one byte), first sharing
one inherited listening socket, then each with its own ``SO_REUSEPORT``
socket (what ``serve --workers`` does). Worker 0 is made busy (20 ms of CPU
per connection it accepts, standing in for a loaded event loop) and a client
opens ``--connections`` connections at a steady rate (one every 5 ms).
Reported: each worker's share and the client's connect-to-answer time
(median, p99). With one shared queue the idle worker picks up what the busy
one cannot; with ``SO_REUSEPORT`` the kernel hashes each connection to a
socket whoever is busy, so the busy worker's share waits. (With idle workers
the shared queue is uneven instead: whichever process wakes first takes the
connection; see ``orchestrator/workers.py`` for the figures and the choice.)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_websocket

from switchboard.orchestrator import devcreds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- part 1: the product


async def product(workers: int, connections: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, LOG_LEVEL="warning", TWILIO_AUTH_TOKEN="bench")
        env.pop("DATABASE_URL", None)
        command = [sys.executable, "-m", "switchboard.orchestrator.cli", "serve"]
        command += ["--workers", str(workers), "--port", "0", "--data-dir", tmp]
        command += ["--max-calls-per-worker", "1000", "--max-local-calls-per-worker", "1000"]
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        try:
            url = await listening_url(process)
            result = await measure(url, Path(tmp), connections, calls)
        finally:
            process.send_signal(signal.SIGTERM)
            process.send_signal(signal.SIGTERM)
            await process.wait()
    return result


async def listening_url(process: trio.Process) -> str:
    assert process.stdout is not None
    seen = b""
    marker = b"Switchboard is listening on "
    while marker not in seen or not seen.split(marker, 1)[1].count(b"\n"):
        chunk = await process.stdout.receive_some(4096)
        if not chunk:
            raise SystemExit(f"the server exited: {seen.decode(errors='replace')}")
        seen += chunk
    return seen.split(marker, 1)[1].split(b" ", 1)[0].decode()


async def measure(url: str, data_dir: Path, connections: int, calls: int) -> dict[str, Any]:
    async def one() -> int:
        async with httpx.AsyncClient() as client:
            response = await client.get(url + "/health")
        return int(response.headers["x-switchboard-worker"])

    sequential = Counter([await one() for _ in range(connections)])
    concurrent: Counter[int] = Counter()
    limiter = trio.CapacityLimiter(20)

    async def limited() -> None:
        async with limiter:
            concurrent[await one()] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(limited)

    creds = devcreds.load(data_dir)
    assert creds is not None
    held: Counter[int] = Counter()
    async with AsyncExitStack() as stack, httpx.AsyncClient() as client:
        for _ in range(calls):
            made = await client.post(  # a session token: any worker's is good on every worker
                url + "/v1/sessions",
                json={"agent_id": "receptionist"},
                headers={"Authorization": f"Bearer {creds.api_key}"},
            )
            token = made.json()["token"]
            ws = await stack.enter_async_context(
                trio_websocket.open_websocket_url(
                    url.replace("http://", "ws://") + "/v1/realtime",
                    extra_headers=[(b"authorization", f"Bearer {token}".encode())],
                )
            )
            headers = dict(ws.handshake_headers)
            held[int(headers[b"x-switchboard-worker"])] += 1
            await ws.get_message()
    return {
        "http_sequential": dict(sorted(sequential.items())),
        "http_20_at_a_time": dict(sorted(concurrent.items())),
        "calls_held": dict(sorted(held.items())),
    }


# -- part 2: one shared socket against SO_REUSEPORT


def accept_loop(sock: socket.socket | None, port: int, busy_s: float, ready: Any) -> None:
    if sock is None:  # SO_REUSEPORT: a socket of its own on the same port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    ready.set()
    while True:
        selector.select()
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            continue  # another worker took it
        conn.setblocking(True)
        conn.sendall(bytes([int(busy_s > 0)]))
        conn.close()
        end = time.process_time() + busy_s
        while time.process_time() < end:  # a loaded event loop: CPU, not sleep
            pass


def socket_strategy(shared: bool, connections: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if not shared:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    if shared:
        probe.listen(1024)
    processes = []
    for busy_s in (0.02, 0.0):
        ready = ctx.Event()
        p = ctx.Process(
            target=accept_loop, args=(probe if shared else None, port, busy_s, ready), daemon=True
        )
        p.start()
        ready.wait()
        processes.append(p)
    if not shared:
        probe.close()  # bound but never listening: takes no connections
    answered: Counter[str] = Counter()
    waits: list[float] = []
    try:
        for _ in range(connections):
            t0 = time.perf_counter()
            with socket.create_connection(("127.0.0.1", port)) as conn:
                worker = conn.recv(1)
            waits.append((time.perf_counter() - t0) * 1000)
            answered["busy" if worker == b"\x01" else "idle"] += 1
            time.sleep(0.005)
    finally:
        for p in processes:
            p.kill()
            p.join()
        probe.close()
    return {
        "share": dict(sorted(answered.items())),
        "answer_ms_median": round(statistics.median(waits), 2),
        "answer_ms_p99": round(percentile(waits, 0.99), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {
        "shared socket, worker 0 busy": socket_strategy(True, args.connections),
        "SO_REUSEPORT, worker 0 busy": socket_strategy(False, args.connections),
    }
    results["serve --workers"] = trio.run(product, args.workers, args.connections, args.calls)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, figures in results.items():
        print(f"{name}: {figures}")


if __name__ == "__main__":
    main()
