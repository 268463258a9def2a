"""What the guarded webhook client costs per tool call, beside plain httpx in the same run.

    python bench/bench_tool_http.py [--rounds N] [--json]

One webhook exchange (a 150-byte JSON body out, a 30-byte JSON answer back)
against the fake business server on loopback (tests/tool_servers.py, which
answers ``connection: close``, so every exchange opens a connection), over
HTTP and over HTTPS (a trustme certificate), two ways, interleaved
round-robin so machine noise hits both alike:

- ``httpx``: a plain ``httpx.AsyncClient`` per request, connecting to the
  address with the name for Host and SNI: the reference;
- ``guarded``: :meth:`GuardedHttp.exchange` (a lookup through a fake
  resolver, every address checked, the connection pinned, the byte cap
  counted on every read, one deadline).

Figures: median wall and CPU milliseconds per exchange (the server runs in
the same process, so both include its share) and the guarded client's ratio
to the reference. Ratios, not absolute times, are what carry across machines.
On loopback the network costs nothing: over the internet each exchange also
pays the round trips of a new TCP connection and TLS handshake, as any
client does that does not keep connections (the guarded one does not, see
its module docstring).

Needs the test extras (trustme) and runs the fakes of tests/tool_servers.py.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio
import trustme
from _harness import use_test_helpers

from switchboard.actors.tools.address_policy import AddressPolicy
from switchboard.actors.tools.guarded_http import GuardedHttp
from switchboard.actors.tools.invocation import ToolInvocation
from switchboard.actors.tools.tool_http import MAX_ANSWER_BYTES, request_body

use_test_helpers()
from tool_servers import BusinessServer, FakeResolver, start_business  # noqa: E402

Job = Callable[[], Awaitable[object]]


async def measure(jobs: dict[str, Job], rounds: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU milliseconds of one run of each job, interleaved."""
    wall: dict[str, list[float]] = {name: [] for name in jobs}
    cpu: dict[str, list[float]] = {name: [] for name in jobs}
    for job in jobs.values():  # warm up
        await job()
    for _ in range(rounds):
        for name, job in jobs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            await job()
            wall[name].append(1000 * (time.perf_counter() - w0))
            cpu[name].append(1000 * (time.process_time() - c0))
    return {
        name: {"wall_ms": statistics.median(wall[name]), "cpu_ms": statistics.median(cpu[name])}
        for name in jobs
    }


async def one_scheme(
    nursery: trio.Nursery,
    scheme: str,
    server_tls: ssl.SSLContext | None,
    client_tls: ssl.SSLContext,
    rounds: int,
) -> dict[str, dict[str, float]]:
    """The figures for ``scheme`` (``http`` or ``https``)."""
    _, port = await start_business(nursery, BusinessServer(tls=server_tls))
    some = uuid.uuid4()
    body = request_body(
        ToolInvocation("call_1", "book_table", {"party_size": 4}, some, some, some, "acme", "r")
    )
    url = f"{scheme}://business.test:{port}/tool"
    allow = AddressPolicy.for_tenant([f"127.0.0.1:{port}"])
    guarded = GuardedHttp(FakeResolver({"business.test": ["127.0.0.1"]}), ssl_context=client_tls)
    # httpx would resolve business.test through the system: give it the address and
    # keep the name for Host and SNI, as the guarded client does.
    direct = f"{scheme}://127.0.0.1:{port}/tool"
    ext = {"sni_hostname": "business.test"}
    head = {"host": f"business.test:{port}", "content-type": "application/json"}

    async def with_httpx() -> object:
        async with httpx.AsyncClient(verify=client_tls, trust_env=False) as client:
            answer = await client.post(direct, content=body, headers=head, extensions=ext)
            return answer.json()

    async def with_guarded() -> object:
        answer = await guarded.exchange(
            "POST",
            url,
            headers={"content-type": "application/json"},
            content=body,
            policy=allow,
            timeout_s=10,
            max_bytes=MAX_ANSWER_BYTES,
        )
        return json.loads(answer.body)

    figures = await measure({"httpx": with_httpx, "guarded": with_guarded}, rounds)
    g, ref = figures["guarded"], figures["httpx"]
    figures["guarded / httpx"] = {k: g[k] / ref[k] for k in g}
    return figures


async def run(rounds: int) -> dict[str, Any]:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("business.test").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    async with trio.open_nursery() as nursery:
        results = {
            "http": await one_scheme(nursery, "http", None, client_tls, rounds),
            "https": await one_scheme(nursery, "https", server_tls, client_tls, rounds),
        }
        nursery.cancel_scope.cancel()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="exchanges per way (200)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    results = trio.run(run, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"Python {sys.version.split()[0]}, httpx {httpx.__version__}, {args.rounds} rounds")
    for scheme, figures in results.items():
        print(f"\n{scheme.upper()}, one webhook exchange on loopback")
        print(f"  {'':16} {'wall ms':>9} {'CPU ms':>9}")
        for name, f in figures.items():
            unit = "x" if "/" in name else ""
            print(f"  {name:16} {f['wall_ms']:8.3f}{unit:1} {f['cpu_ms']:8.3f}{unit:1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
