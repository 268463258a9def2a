"""A fleet on loopback, as ``deploy/`` runs one: Debian's PostgreSQL, the schema applied
once by ``switchboard db migrate`` (the Kubernetes Job's command), two ``switchboard
serve --workers 2`` instances, and Debian's HAProxy in front with ``deploy/haproxy.cfg``.

Outside CI a missing Debian package (postgresql, haproxy) skips the fleet tests; in CI
(``CI`` set) it fails them, since ``.ci/run`` installs both. PostgreSQL refuses to run
as root, so as root its commands run as the ``postgres`` user the Debian package makes.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import trio
from fault_support import AUTH_TOKEN, ServerProcess, poll

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
BACKEND_HEADER = "x-switchboard-backend"
"""The header the balancer adds to every answer: which instance (``a`` or ``b``) gave it."""
SIGNING_SECRETS = "fleet=" + "s" * 40
"""Shared by both instances: a browser token made by one is checked by the other."""


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed; .ci/run installs it")
    pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*command: str) -> list[str]:
    """``command`` run as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else [*command]


@contextmanager
def debian_postgres() -> Iterator[str]:
    """A PostgreSQL cluster from Debian's binaries in a temporary folder, on a free
    loopback port; yields its URL without a database name (superuser ``postgres``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        _missing("Debian's postgresql")
    bin_dir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="switchboard-fleet-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    try:
        subprocess.run(
            _as_postgres(
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ),
            **run,
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-w",
                "-l",
                str(folder / "log"),
                "start",
            ),
            **run,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


def new_database(cluster_url: str) -> str:
    """A new empty database on the cluster; its URL."""
    name = f"fleet_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{cluster_url}/postgres", autocommit=True) as conn:
        conn.execute(f"create database {name}")
    return f"{cluster_url}/{name}"


def migrate(database_url: str) -> str:
    """``switchboard db migrate``, as the Kubernetes Job runs it; its output."""
    out = subprocess.run(
        [sys.executable, "-m", "switchboard.orchestrator.cli", "db", "migrate"],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@dataclass
class Fleet:
    """Two instances behind the balancer; ``front`` is the fleet as a caller sees it (the
    balancer's URL; the first instance's API key and agent)."""

    instances: dict[str, ServerProcess]
    front: ServerProcess
    balancer: trio.Process
    balancer_log: Path

    async def backends_up(self, names: set[str], timeout_s: float = 30.0) -> None:
        """Until the balancer sends requests to exactly ``names`` (by ``GET /health``)."""

        async def seen() -> bool:
            found: set[str] = set()
            async with httpx.AsyncClient(timeout=5) as client:
                for _ in range(8 * len(self.instances)):
                    answer = await client.get(self.front.url + "/health")
                    found.add(answer.headers.get(BACKEND_HEADER, ""))
            return found == names

        await poll(seen, f"the balancer sending to {sorted(names)}", timeout_s, 0.5)


@asynccontextmanager
async def fleet(tmp_path: Path, database_url: str, *, grace_s: float) -> AsyncIterator[Fleet]:
    """The running fleet (see the module docstring); ``grace_s``: ``DRAIN_GRACE_S``."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        _missing("Debian's haproxy")
    front_port = free_port()
    front_url = f"http://127.0.0.1:{front_port}"
    env = {
        "PUBLIC_URL": front_url,  # Twilio's signatures and the <Stream> URL: the balancer
        "VOICE_RUNTIME_SIGNING_SECRETS": SIGNING_SECRETS,
        "DRAIN_GRACE_S": str(grace_s),
    }
    instances = {
        name: ServerProcess(
            tmp_path / name,
            database_url,
            tmp_path / f"{name}.log",
            dict(env),
            workers=2,
            port=free_port(),  # the same at a restart: the balancer's address for it
        )
        for name in ("a", "b")
    }
    log_path = tmp_path / "haproxy.log"
    try:
        async with trio.open_nursery() as nursery:
            for instance in instances.values():
                nursery.start_soon(instance.start)
        listen = {
            f"SWITCHBOARD_{name.upper()}": instance.url.removeprefix("http://")
            for name, instance in instances.items()
        }
        with log_path.open("wb") as log:
            balancer = await trio.lowlevel.open_process(
                [haproxy, "-db", "-f", str(HAPROXY_CFG)],
                env={**os.environ, "LISTEN": f"127.0.0.1:{front_port}", **listen},
                stdout=log,
                stderr=log,
            )
        a = instances["a"]
        front = ServerProcess(a.data_dir, database_url, a.log_path, url=front_url)
        front.api_key, front.agent_id = a.api_key, a.agent_id
        deployed = Fleet(instances, front, balancer, log_path)
        try:
            await deployed.backends_up({"a", "b"})
            yield deployed
        finally:
            with trio.CancelScope(shield=True):
                balancer.kill()
                await balancer.wait()
    finally:
        with trio.CancelScope(shield=True):
            for instance in instances.values():
                await instance.stop()


__all__ = [
    "AUTH_TOKEN",
    "BACKEND_HEADER",
    "Fleet",
    "debian_postgres",
    "fleet",
    "migrate",
    "new_database",
]
