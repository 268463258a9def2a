"""``switchboard serve``: bring up the database, the demo agent and the HTTP server.

:func:`serve` runs the whole server in this process (``--workers 1``, and the
tests). With several workers, :mod:`.workers` does the once-only part here
(:func:`open_database`, ``migrate``, :func:`bootstrap`) in a parent process
and each worker runs :func:`build_runtime` and :func:`run_http` on the
listening socket it inherits.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import signal
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Final

import httpx
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from switchboard.actors.context import PHONE_AUDIO, AudioFormat
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.local.workers import SpeechWorkers, one_off_synthesis
from switchboard.actors.tool_executor import TwilioRest
from switchboard.actors.tools.guarded_http import GuardedHttp
from switchboard.codecs.browser_protocol import DEFAULT_SAMPLE_RATE

from . import devcreds
from .admission import Admission
from .agent_file import load_agent_file
from .agents import AgentSpec
from .app import create_app
from .call import CallResources
from .config import Settings
from .db import Database, migrate
from .embedded_pg import start_embedded
from .knowledge_store import KnowledgeIndex
from .live_config import LiveConfig
from .metrics import ServerMetrics
from .post_call import PostCallMetrics, keep_posting
from .recording import open_recordings, recover_recordings
from .recording_store import open_store
from .recording_sweep import keep_sweeping
from .recovery import instance_id, keep_recovering, recover
from .runtime import Runtime
from .runtime_config import env_layer
from .spool import drain_once
from .store import Store
from .tokens import Keyring
from .ws_compression import refuse_permessage_deflate

log = structlog.get_logger("switchboard.server")

DRAIN_TIMEOUT_S = Settings.drain_timeout_s
"""How long a SIGTERM waits for the calls in flight before the server stops, unless
``DRAIN_TIMEOUT_S`` says otherwise (:attr:`.Settings.drain_timeout_s`)."""


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


def example_agent(settings: Settings) -> AgentSpec:
    """The packaged example agent (``serve --mode`` does not change it: the mode leads
    every call's chain for the run instead, as the runtime configuration's ``env``
    layer; see :func:`.runtime_config.env_layer`)."""
    return load_agent_file(example_agent_path())


def bootstrap(store: Store, settings: Settings) -> tuple[devcreds.DevCredentials, list[AgentSpec]]:
    """Apply the example agent on a fresh database; make sure dev credentials work."""
    example = example_agent(settings)
    if not any(store.agent_for_number(n) for n in example.phone_numbers):
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
    if settings.dev_mode and settings.engine_api_key is None:
        key, made = devcreds.engine_key(settings.data_dir)
        if made:
            print(
                f"Development admin key for /config (no ENGINE_API_KEY set; kept in "
                f"{settings.data_dir / devcreds.ENGINE_KEY_FILE}): {key}",
                flush=True,
            )
    return creds, [example]


async def drain(
    runtime: Runtime, timeout_s: float | None = None, grace_s: float | None = None
) -> bool:
    """Stop taking calls (/ready: 503) and wait for those in flight; False on timeout.

    First, for ``grace_s`` (default ``DRAIN_GRACE_S``), ``/ready`` answers 503 while
    calls are still taken, so a balancer's health checks move new calls elsewhere
    before this server refuses one. In flight: the call WebSockets open in this
    process, and the Twilio streams the server still expects (their webhook was
    answered; they are admitted wherever they land, so every worker stays up until
    none is due). ``timeout_s`` defaults to ``DRAIN_TIMEOUT_S``.
    """
    settings = runtime.settings
    timeout_s = settings.drain_timeout_s if timeout_s is None else timeout_s
    grace_s = settings.drain_grace_s if grace_s is None else grace_s
    if grace_s > 0:
        runtime.admission.leaving = True
        log.warning("leaving: unready, still taking calls", grace_s=grace_s)
        await trio.sleep(grace_s)
    runtime.draining = True
    log.warning("draining", calls=runtime.active_calls, timeout_s=timeout_s)
    with trio.move_on_after(timeout_s):
        while runtime.active_calls > 0 or runtime.admission.pending_streams() > 0:
            await trio.sleep(0.1)
        return True
    log.warning("drain timed out", calls=runtime.active_calls)
    return False


async def stop_on_signals(
    runtime: Runtime,
    server: trio.CancelScope,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM,),
) -> None:
    """On one of ``signals``: drain, then stop the server (a second one stops it at once)."""
    with trio.open_signal_receiver(*signals) as received:
        async for _ in received:
            break
        async with trio.open_nursery() as nursery:

            async def second_signal() -> None:
                async for _ in received:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(second_signal)
            await drain(runtime)
            nursery.cancel_scope.cancel()
        server.cancel()


FINAL_DRAIN_S: Final = 15.0


async def final_drain(store: Store, spool_dir: Path) -> None:
    """Before the server exits: one last try (``FINAL_DRAIN_S`` at most) to write the
    journals of its calls to PostgreSQL; what is left stays on disk for the next start."""
    with trio.CancelScope(shield=True), trio.move_on_after(FINAL_DRAIN_S):
        if await drain_once(store, spool_dir):
            return
    log.warning("journals left for the next start", folder=str(spool_dir))


def hypercorn_config(bind: str) -> HypercornConfig:
    """Hypercorn's settings for ``bind`` (``HOST:PORT`` or ``fd://N``); call sockets
    decline permessage-deflate (:func:`refuse_permessage_deflate`)."""
    refuse_permessage_deflate()
    config = HypercornConfig()
    config.bind = [bind]
    config.accesslog = None
    config.graceful_timeout = 5.0
    return config


def call_resources(settings: Settings, store: Store, metrics: ServerMetrics) -> CallResources:
    """What this process's calls share (the failover counters and call metrics are
    ``metrics``'; it also serves the spool's depth)."""
    metrics.watch_spool(settings.data_dir / "spool")
    return CallResources(
        store=store,
        assets=AssetRegistry(SpeechWorkers(settings.speech_workers_per_process)),
        spool_dir=settings.data_dir / "spool",
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
        metrics=metrics.failover,
        call_metrics=metrics.calls,
        recordings=open_recordings(settings),
        web=GuardedHttp(),
        functions_base_url=settings.functions_base_url,
        knowledge=KnowledgeIndex(store.db),
    )


async def prepare_greetings(resources: CallResources, agents: list[AgentSpec]) -> None:
    """Synthesize the agents' greetings (phone and browser formats) before the first call."""
    async with one_off_synthesis() as speech:  # a worker process that exits after
        for agent in agents:  # no model is loaded in this process, no worker kept
            assets = resources.assets.get(agent)
            await assets.prepare(PHONE_AUDIO, speech)
            await assets.prepare(AudioFormat("pcm16", DEFAULT_SAMPLE_RATE), speech)


def build_runtime(
    settings: Settings,
    store: Store,
    creds: devcreds.DevCredentials,
    *,
    keyring: Keyring,
    admission: Admission,
) -> Runtime:
    """One worker's runtime; ``admission.metrics`` is what ``GET /metrics`` serves. Its
    runtime configuration is read now (:class:`.LiveConfig`; :func:`run_http` keeps it
    current).

    Raises:
        StorageError: PostgreSQL did not answer the configuration's read.
    """
    runtime = Runtime(
        settings=settings,
        store=store,
        resources=call_resources(settings, store, admission.metrics),
        twilio_auth_token=settings.twilio_auth_token or creds.twilio_auth_token,
        keyring=keyring,
        dev_api_key=creds.api_key if settings.dev_mode else None,
        admission=admission,
        engine_api_key=settings.engine_api_key
        or (devcreds.engine_key(settings.data_dir)[0] if settings.dev_mode else None),
    )
    live = LiveConfig(
        store.db, settings.data_dir, env_layer(settings.endpoints, settings.demo_mode)
    )
    live.refresh()
    live.attach(runtime)
    runtime.live_config = live
    return runtime


@contextlib.asynccontextmanager
async def started_database(
    settings: Settings,
) -> AsyncIterator[tuple[str, Store, devcreds.DevCredentials, list[AgentSpec]]]:
    """The once-only start: the database (:func:`open_database`), ``migrate``,
    :func:`bootstrap` and crash recovery (:func:`.recovery.recover`); yields its
    DSN, a store on it, the dev credentials and the agents to prepare."""
    with open_database(settings) as dsn:
        applied = await trio.to_thread.run_sync(migrate, dsn)
        if applied:
            log.info("schema migrated", versions=[m.label for m in applied])
        db = Database(dsn, settings.database_pool_size(parent=True))
        try:
            store = Store(db, owner=instance_id(settings.data_dir))
            creds, agents = await trio.to_thread.run_sync(bootstrap, store, settings)
            assert store.owner is not None
            await trio.to_thread.run_sync(recover, store, settings.data_dir / "spool", store.owner)
            await trio.to_thread.run_sync(recover_recordings, store, open_recordings(settings))
            yield dsn, store, creds, agents
        finally:
            db.close()


def warn_dev_mode(settings: Settings) -> None:
    if settings.dev_mode:
        log.warning(
            "development mode: session tokens are signed with a secret made at start "
            "(set VOICE_RUNTIME_SIGNING_SECRETS), and /practice makes sessions with "
            "the development API key"
        )


async def run_http(
    runtime: Runtime,
    bind: str,
    *,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM,),
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``runtime``'s app on ``bind`` until cancelled or drained by one of ``signals``
    (signals only when this is the main thread); ``task_status`` gets the bound URLs.
    The calls share one HTTP client (one TLS context and connection pool per process)."""
    async with httpx.AsyncClient() as shared_http, trio.open_nursery() as nursery:
        runtime.resources.http = shared_http
        if runtime.live_config is not None:
            nursery.start_soon(runtime.live_config.watch)
        if threading.current_thread() is threading.main_thread():
            nursery.start_soon(stop_on_signals, runtime, nursery.cancel_scope, signals)
        urls = await nursery.start(hypercorn_serve, create_app(runtime), hypercorn_config(bind))
        task_status.started(urls)


async def serve(
    settings: Settings, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the server in this process until cancelled; ``task_status.started`` gets the
    bound URLs. SIGTERM or SIGINT (Ctrl-C) drains (:func:`drain`), then stops."""
    async with started_database(settings) as (_, store, creds, agents):
        admission = Admission.in_process(
            ServerMetrics(),
            max_calls=settings.max_calls_per_worker,
            max_local_calls=settings.local_calls_per_worker,
        )
        runtime = build_runtime(
            settings, store, creds, keyring=settings.keyring(), admission=admission
        )
        await prepare_greetings(runtime.resources, agents)
        warn_dev_mode(settings)
        async with trio.open_nursery() as nursery:
            assert runtime.resources.spool_dir is not None
            nursery.start_soon(
                keep_recovering, store, runtime.resources.spool_dir, settings.spool_drain_interval_s
            )
            sweep_every_s = settings.recording_sweep_interval_s
            nursery.start_soon(keep_sweeping, store, open_store(settings), sweep_every_s)
            registry = admission.metrics.failover.registry
            nursery.start_soon(
                partial(keep_posting, metrics=PostCallMetrics(registry)), store, settings
            )

            async def http(task_status: trio.TaskStatus[list[str]]) -> None:
                bind = f"{settings.host}:{settings.port}"
                signals = (signal.SIGTERM, signal.SIGINT)  # Ctrl-C drains as in worker mode
                await run_http(runtime, bind, signals=signals, task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop the spool task too

            urls = await nursery.start(http)
            if settings.port == 0 and urls:  # the URLs Twilio is given need the real port
                runtime.settings = settings = replace(settings, port=int(urls[0].rsplit(":", 1)[1]))
            announce(settings, urls)
            task_status.started(urls)
        await final_drain(store, runtime.resources.spool_dir)


def announce(settings: Settings, urls: list[str], workers: int = 1) -> None:
    """Log and print where the server listens."""
    log.info("listening", urls=urls, public_url=settings.base_url, workers=workers)
    print(
        f"Switchboard is listening on {', '.join(urls)} "
        f"(public URL {settings.base_url}, {workers} worker process"
        f"{'es' if workers > 1 else ''}); practice calls at {settings.base_url}/practice",
        flush=True,
    )
