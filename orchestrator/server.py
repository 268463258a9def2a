"""``switchboard serve``: bring up the database, the demo agent and the HTTP server."""

from __future__ import annotations

import contextlib
import importlib.resources
import signal
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from switchboard.actors.context import PHONE_AUDIO, AudioFormat
from switchboard.actors.tool_executor import TwilioRest
from switchboard.codecs.browser_protocol import DEFAULT_SAMPLE_RATE

from . import devcreds
from .agent_file import load_agent_file
from .agents import AgentSpec
from .app import create_app
from .call import CallResources
from .config import Settings
from .db import Database, migrate
from .embedded_pg import start_embedded
from .runtime import Runtime
from .spool import keep_draining
from .store import Store
from .ws_compression import refuse_permessage_deflate

log = structlog.get_logger("switchboard.server")

DRAIN_TIMEOUT_S = 120.0
"""How long a SIGTERM waits for the calls in flight before the server stops."""


def example_agent_path() -> Path:
    """The packaged ``examples/receptionist.yaml``."""
    resource = importlib.resources.files("switchboard") / "examples" / "receptionist.yaml"
    with importlib.resources.as_file(resource) as p:
        return Path(p)


@contextlib.contextmanager
def open_database(settings: Settings):  # type: ignore[no-untyped-def]
    """Yield the DSN of ``DATABASE_URL``, or of an embedded PostgreSQL in the data folder."""
    if settings.database_url:
        yield settings.database_url
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = start_embedded(settings.data_dir)
    try:
        yield embedded.uri
    finally:
        embedded.stop()


def with_mode_first(agent: AgentSpec, mode: str) -> AgentSpec:
    """``agent`` with ``mode`` first in its chain; the rest of the chain follows, then local."""
    rest = [m for m in (agent.mode, *agent.fallback) if m != mode]
    if "local" not in rest and mode != "local":
        rest.append("local")
    return replace(agent, mode=mode, fallback=tuple(dict.fromkeys(rest)))


def bootstrap(store: Store, settings: Settings) -> tuple[devcreds.DevCredentials, list[AgentSpec]]:
    """Apply the example agent on a fresh database; make sure dev credentials work."""
    example = load_agent_file(example_agent_path())
    if settings.demo_mode is not None:
        example = with_mode_first(example, settings.demo_mode)
    if settings.demo_mode is not None or not any(
        store.agent_for_number(n) for n in example.phone_numbers
    ):
        store.apply_agent(example)
        log.info(
            "applied the example agent",
            agent=example.name,
            numbers=example.phone_numbers,
            chain=[example.mode, *example.fallback],
        )
    creds = devcreds.load(settings.data_dir)
    tenant_id = store.ensure_tenant(example.tenant)
    if creds is None or store.tenant_for_api_key(creds.api_key) is None:
        creds = devcreds.DevCredentials(
            tenant=example.tenant,
            api_key=store.create_api_key(tenant_id),
            twilio_auth_token=(creds.twilio_auth_token if creds else devcreds.new_twilio_token()),
        )
        devcreds.save(settings.data_dir, creds)
        print(
            f"Development credentials (kept in {devcreds.path(settings.data_dir)}):\n"
            f"  API key for tenant {creds.tenant!r}: {creds.api_key}\n"
            + (
                ""
                if settings.twilio_auth_token
                else f"  Twilio auth token (no TWILIO_AUTH_TOKEN set): {creds.twilio_auth_token}\n"
            ),
            flush=True,
        )
    return creds, [example]


async def drain(runtime: Runtime, timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
    """Stop taking calls (/ready: 503) and wait for those in flight; False on timeout."""
    runtime.draining = True
    log.warning("draining", calls=runtime.active_calls, timeout_s=timeout_s)
    with trio.move_on_after(timeout_s):
        while runtime.active_calls > 0:
            await trio.sleep(0.1)
        return True
    log.warning("drain timed out", calls=runtime.active_calls)
    return False


async def stop_on_sigterm(runtime: Runtime, server: trio.CancelScope) -> None:
    """On SIGTERM: drain, then stop the server (a second SIGTERM stops it at once)."""
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            break
        async with trio.open_nursery() as nursery:

            async def second_sigterm() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(second_sigterm)
            await drain(runtime)
            nursery.cancel_scope.cancel()
        server.cancel()


async def serve(
    settings: Settings, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the server until cancelled; ``task_status.started`` gets the bound URLs."""
    with open_database(settings) as dsn:
        await trio.to_thread.run_sync(migrate, dsn)
        db = Database(dsn)
        http = httpx.AsyncClient()  # one TLS context and connection pool for every call
        try:
            store = Store(db)
            creds, agents = await trio.to_thread.run_sync(bootstrap, store, settings)
            resources = CallResources(
                store=store,
                spool_dir=settings.data_dir / "spool",
                http=http,
                endpoints=settings.endpoints,
                twilio_rest=(
                    TwilioRest(
                        settings.twilio_account_sid,
                        settings.twilio_auth_token,
                        settings.twilio_api_base,
                    )
                    if settings.twilio_account_sid and settings.twilio_auth_token
                    else None
                ),
            )
            for agent in agents:  # synthesize greetings before the first call
                assets = await trio.to_thread.run_sync(resources.assets.get, agent)
                await trio.to_thread.run_sync(assets.prepare, PHONE_AUDIO)
                browser_audio = AudioFormat("pcm16", DEFAULT_SAMPLE_RATE)
                await trio.to_thread.run_sync(assets.prepare, browser_audio)
            runtime = Runtime(
                settings=settings,
                store=store,
                resources=resources,
                twilio_auth_token=settings.twilio_auth_token or creds.twilio_auth_token,
                keyring=settings.keyring(),
                dev_api_key=creds.api_key if settings.dev_mode else None,
            )
            if settings.dev_mode:
                log.warning(
                    "development mode: session tokens are signed with a secret made at start "
                    "(set VOICE_RUNTIME_SIGNING_SECRETS), and /practice makes sessions with "
                    "the development API key"
                )
            refuse_permessage_deflate()
            config = HypercornConfig()
            config.bind = [f"{settings.host}:{settings.port}"]
            config.accesslog = None
            config.graceful_timeout = 5.0
            async with trio.open_nursery() as nursery:
                assert resources.spool_dir is not None
                nursery.start_soon(keep_draining, store, resources.spool_dir)
                if threading.current_thread() is threading.main_thread():
                    nursery.start_soon(stop_on_sigterm, runtime, nursery.cancel_scope)
                urls = await nursery.start(hypercorn_serve, create_app(runtime), config)
                if settings.port == 0 and urls:  # the URLs Twilio is given need the real port
                    runtime.settings = settings = replace(
                        settings, port=int(urls[0].rsplit(":", 1)[1])
                    )
                log.info("listening", urls=urls, public_url=settings.base_url)
                print(
                    f"Switchboard is listening on {', '.join(urls)} "
                    f"(public URL {settings.base_url}); practice calls at "
                    f"{settings.base_url}/practice",
                    flush=True,
                )
                task_status.started(urls)
        finally:
            with trio.CancelScope(shield=True):
                await http.aclose()
            db.close()
