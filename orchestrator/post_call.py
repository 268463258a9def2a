"""Post-call hooks: analyse each ended call, then deliver its webhooks (Standard Webhooks).

:func:`keep_posting` runs once per server (``serve`` in its one process, or the
parent process under ``--workers``; any number of instances may share one
database). Every ``POST_CALL_POLL_S`` seconds it:

1. claims post-call jobs (:func:`.outbox_store.claim_jobs`, leased), reads each
   call (``call_logs``, ``call_turns``, ``call_events``, the agent's
   ``analysis:`` criteria), analyses it (``POST_CALL_ANALYSIS``: ``local``,
   ``llm`` or ``off``; see :mod:`.analysis_local`, :mod:`.analysis_llm`) and
   stores the result in ``call_logs.summary`` with its ``call.analyzed``
   webhooks in one transaction (:func:`.outbox_store.store_analysis`);
2. claims due webhook deliveries (leased) and POSTs each once.

The transcript in ``call_turns`` is final when a job exists: a call's
``call_logs`` row (and with it the job) is written only after all its events
(``orchestrator/call.py``; the spool drainer keeps the same order).

A delivery is a POST of the event's JSON body (``{"type", "timestamp",
"data"}``) to the subscription's URL through
:class:`~switchboard.actors.tools.guarded_http.GuardedHttp` (the tenant's
allowlist and the SSRF rules of webhook tools; no redirect followed), with
``content-type: application/json`` and the Standard Webhooks headers
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``, signed by the
``standardwebhooks`` package with the subscription's secret;
https://www.standardwebhooks.com/). The ``webhook-id`` is the same on every
attempt, so a receiver that keeps the ids it has seen handles each event once.

Any 2xx answer delivers it. Anything else (another status, a refused
connection, a timeout past ``WEBHOOK_TIMEOUT_S``) is retried after
:func:`retry_delay_s` (exponential, base ``WEBHOOK_RETRY_BASE_S``, capped at
``WEBHOOK_RETRY_CAP_S``, with jitter); after ``WEBHOOK_MAX_ATTEMPTS`` attempts
the row is ``dead`` (``switchboard tenant webhooks NAME retry ID`` revives it).
State lives in PostgreSQL only, so a restart loses nothing: a row a dead
process had leased is taken again when its lease ends.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final
from uuid import UUID

import httpx
import structlog
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge
from standardwebhooks import Webhook

from ..actors.tools.address_policy import AddressPolicy
from ..actors.tools.guarded_http import GuardedHttp, GuardedHttpError
from ..actors.tools.webhook import signed_headers
from .analysis_llm import analyse_with_llm
from .analysis_local import analyse_locally
from .analysis_spec import AnalysisSpec, CallFacts
from .config import PostCallSettings, Settings
from .errors import StorageError
from .outbox_store import (
    Delivery,
    claim_jobs,
    claim_webhooks,
    delivery,
    fail_job,
    mark_attempt,
    outbox_depth,
    store_analysis,
)
from .store import Store
from .tenant_tools import tool_settings

__all__ = ["PostCallMetrics", "deliver_once", "keep_posting", "retry_delay_s", "run_jobs_once"]

log = structlog.get_logger("switchboard.post_call")

JOB_LEASE_S: Final = 300.0
"""A post-call job's lease: longer than any analysis (an LLM's included)."""
ANSWER_MAX_BYTES: Final = 64 * 1024
"""What is read of a receiver's answer (only its status matters)."""


def retry_delay_s(
    attempts: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (1, 2, ...):
    ``min(cap, base * 2 ** (attempts - 1))`` times a jitter in [0.5, 1) ("equal
    jitter", AWS Architecture Blog, "Exponential Backoff And Jitter"), so
    receivers that come back are not hit by every sender at once."""
    return float(min(cap_s, base_s * 2.0 ** (attempts - 1)) * (0.5 + rand() / 2))


class PostCallMetrics:
    """``switchboard_webhook_deliveries_total{event, outcome}`` (outcome ``delivered``,
    ``retry``, ``dead``) and ``switchboard_webhook_outbox{state}`` (rows by state, all
    tenants, as of the last poll)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "switchboard_webhook_deliveries",
            "Webhook delivery attempts by event type and outcome.",
            ("event", "outcome"),
            registry=registry,
        )
        self.outbox = Gauge(
            "switchboard_webhook_outbox",
            "Webhook outbox rows by state (dead: dead letters).",
            ("state",),
            registry=registry,
            multiprocess_mode="liveall",
        )


async def analyse(settings: Settings, http: httpx.AsyncClient, call: CallFacts) -> dict[str, Any]:
    """``call``'s summary and analysis with the configured analyser."""
    if settings.post_call.analysis == "llm":
        ends = settings.endpoints
        return await analyse_with_llm(
            call, http, base_url=ends.llm_base_url, api_key=ends.llm_api_key, model=ends.llm_model
        )
    return analyse_locally(call)


def call_facts(store: Store, tenant_id: UUID, session_id: UUID) -> CallFacts | None:
    """What the analysers read of the call, or None if it has no ``call_logs`` row."""
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            "SELECT l.end_reason, a.spec FROM call_logs l JOIN agents a ON a.id = l.agent_id"
            " WHERE l.session_id = %s",
            (session_id,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    end_reason, spec = row
    raw = (spec or {}).get("analysis") if isinstance(spec, dict) else None
    try:
        analysis = AnalysisSpec.from_json(raw)
    except ValueError:
        analysis = AnalysisSpec()
    turns = tuple((t.role, t.text) for t in store.read_turns(tenant_id, session_id))
    events = tuple(store.read_events(tenant_id, session_id))
    return CallFacts(str(end_reason), turns, events, analysis)


async def run_jobs_once(store: Store, settings: Settings, http: httpx.AsyncClient) -> int:
    """Claim and run the due post-call jobs; returns how many were taken."""
    jobs = await trio.to_thread.run_sync(claim_jobs, store.db, JOB_LEASE_S)
    for tenant_id, session_id, attempts in jobs:
        try:
            facts = await trio.to_thread.run_sync(call_facts, store, tenant_id, session_id)
            summary: dict[str, Any] = {}
            if facts is not None and settings.post_call.analysis != "off":
                summary = await analyse(settings, http, facts)
            await trio.to_thread.run_sync(store_analysis, store.db, tenant_id, session_id, summary)
        except StorageError:
            raise
        except Exception as exc:  # an analyser's bug must not stop the queue
            log.warning("post-call analysis failed", session_id=str(session_id), error=str(exc))
            await trio.to_thread.run_sync(
                fail_job, store.db, tenant_id, session_id, attempts, repr(exc)
            )
    return len(jobs)


async def post(
    web: GuardedHttp, found: Delivery, policy: AddressPolicy, timeout_s: float
) -> tuple[int | None, str | None]:
    """One signed POST of ``found``; ``(status, error)`` (status None: no answer)."""
    body = json.dumps(found.payload, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        **signed_headers(Webhook(found.secret), found.message_id, datetime.now(UTC), body),
    }
    try:
        answer = await web.exchange(
            "POST",
            found.url,
            headers=headers,
            content=body,
            policy=policy,
            timeout_s=timeout_s,
            max_bytes=ANSWER_MAX_BYTES,
        )
    except GuardedHttpError as exc:
        return None, str(exc)
    if 200 <= answer.status < 300:
        return answer.status, None
    return answer.status, f"HTTP {answer.status}"


async def deliver_once(
    store: Store,
    config: PostCallSettings,
    web: GuardedHttp,
    metrics: PostCallMetrics | None = None,
) -> int:
    """Claim the due deliveries and attempt each once; returns how many were attempted."""
    lease_s = config.timeout_s * 2 + 30
    claimed = await trio.to_thread.run_sync(claim_webhooks, store.db, lease_s)
    attempted = 0
    for tenant_id, msg_id in claimed:
        found = await trio.to_thread.run_sync(delivery, store.db, tenant_id, msg_id)
        if found is None:
            continue
        settings = await trio.to_thread.run_sync(tool_settings, store.db, tenant_id)
        status, error = await post(
            web, found, AddressPolicy.for_tenant(settings.allowlist), config.timeout_s
        )
        attempts = found.attempts + 1
        retry_in_s = None
        if error is not None and attempts < config.max_attempts:
            retry_in_s = retry_delay_s(attempts, config.retry_base_s, config.retry_cap_s)
        record = partial(
            mark_attempt,
            store.db,
            tenant_id,
            msg_id,
            delivered=error is None,
            status=status,
            error=error,
            retry_in_s=retry_in_s,
        )
        state = await trio.to_thread.run_sync(record)
        attempted += 1
        outcome = {"pending": "retry"}.get(state, state)
        if metrics is not None:
            metrics.deliveries.labels(found.event_type, outcome).inc()
        logger = log.info if error is None else log.warning
        logger(
            "webhook " + outcome,
            tenant_id=str(tenant_id),
            webhook_id=msg_id,
            event_type=found.event_type,
            attempts=attempts,
            status=status,
            error=error,
            retry_in_s=retry_in_s,
        )
    return attempted


async def keep_posting(
    store: Store,
    settings: Settings,
    *,
    web: GuardedHttp | None = None,
    metrics: PostCallMetrics | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Analyse ended calls and deliver webhooks for as long as the server runs (see the
    module docstring); a round that fails (PostgreSQL away) is logged and retried."""
    web = web if web is not None else GuardedHttp()
    async with httpx.AsyncClient(trust_env=False) as http:
        task_status.started()
        while True:
            try:
                await run_jobs_once(store, settings, http)
                while await deliver_once(store, settings.post_call, web, metrics):
                    pass  # a backlog: keep going until nothing is due
                if metrics is not None:
                    depth = await trio.to_thread.run_sync(outbox_depth, store.db)
                    for state, n in depth.items():
                        metrics.outbox.labels(state).set(n)
            except StorageError as exc:
                log.warning("post-call round failed; next round later", error=str(exc)[:300])
            except Exception:  # a bug here must not take the server's calls down with it
                log.exception("post-call round crashed; next round later")
            await trio.sleep(settings.post_call.poll_s)
