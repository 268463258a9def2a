"""Provider adapters, and how a call builds the one a chain link names.

A provider is an actor (:data:`switchboard.actors.supervisor.ProviderRun`):
``await provider(inbox, outbox, events)`` reads :data:`ToProvider` messages,
writes :data:`ToSupervisor` messages and returns (or raises) when it ends.
Each mode's module has ``build(setup: ProviderSetup) -> ProviderRun``:

| mode | module |
| --- | --- |
| ``local`` | ``switchboard.actors.local.provider`` |
| ``openai-realtime`` | ``switchboard.actors.providers.openai_realtime`` |
| ``gemini-live`` | ``switchboard.actors.providers.gemini_live`` |
| ``cascaded`` | ``switchboard.actors.providers.cascaded`` |

Failures an adapter meets are reported as :class:`ProviderFailed` with a
``kind`` the failover policy understands (``http_5xx`` at the handshake,
``error_event`` of server class, ``disconnect``); stalls are the
supervisor's to detect.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httpx
import trio_websocket

from ..context import CallContext
from ..messages import ConversationItem
from .endpoints import Endpoints

if TYPE_CHECKING:
    from ..local.assets import AssetRegistry
    from ..supervisor import ProviderRun

__all__ = [
    "ADAPTERS",
    "Endpoints",
    "ProviderSetup",
    "WebSocketConnector",
    "build_provider",
    "connect_websocket",
    "unavailable_reason",
]

WebSocketConnector = Callable[
    [str, Sequence[tuple[str, str]]],
    AbstractAsyncContextManager[trio_websocket.WebSocketConnection],
]
"""``connect(url, headers)``: an async context manager yielding an open WebSocket.

Raises ``trio_websocket.ConnectionRejected`` (with ``status_code``) when the
server refuses the handshake, ``OSError``/``HandshakeError`` when it cannot be
reached. Tests pass one that reaches a fake over a memory stream.
"""


def connect_websocket(
    url: str, headers: Sequence[tuple[str, str]]
) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]:
    """The real connector: ``trio_websocket.open_websocket_url`` with ``headers``."""
    return trio_websocket.open_websocket_url(
        url,
        extra_headers=[(k.encode(), v.encode()) for k, v in headers],
        max_message_size=16 * 1024 * 1024,
        connect_timeout=10,
        disconnect_timeout=2,
    )


@dataclass(frozen=True)
class ProviderSetup:
    """What a provider adapter is built from.

    Attributes:
        ctx: the call (agent, caller audio format, clock).
        endpoints: provider URLs and credentials.
        connect: opens WebSockets (the test seam).
        http: the process's HTTP client (chat completions, speech synthesis).
        assets: the local provider's models and cached speech.
        conversation: the conversation so far, as text (after a switch).
        greet: speak the agent's greeting first (the first link of a call).
        respond_now: answer the last caller turn at once (the previous
            provider failed in the middle of its answer).
        source: the instance's name on the call's tape (``ctx.tape.provider``):
            ``<mode>#<generation>``, e.g. ``"openai-realtime#2"`` for the second
            provider instance of the call; a stage of ``cascaded`` appends
            ``/stt``, ``/llm`` or ``/tts``.
    """

    ctx: CallContext
    endpoints: Endpoints
    connect: WebSocketConnector
    http: httpx.AsyncClient
    assets: AssetRegistry
    conversation: tuple[ConversationItem, ...] = ()
    greet: bool = True
    respond_now: bool = False
    source: str = "provider#1"


ADAPTERS: Final = {
    "local": "switchboard.actors.local.provider",
    "openai-realtime": "switchboard.actors.providers.openai_realtime",
    "gemini-live": "switchboard.actors.providers.gemini_live",
    "cascaded": "switchboard.actors.providers.cascaded",
}


def unavailable_reason(mode: str, endpoints: Endpoints) -> str | None:
    """Why ``mode`` cannot run here (unknown, not built, credentials missing), or None."""
    module = ADAPTERS.get(mode)
    if module is None:
        return f"unknown provider mode {mode!r} (known: {', '.join(ADAPTERS)})"
    if importlib.util.find_spec(module) is None:
        return f"provider mode {mode!r} is not available in this build"
    missing = endpoints.missing(mode)
    if missing:
        return f"provider mode {mode!r} needs {' and '.join(missing)} (not set)"
    return None


def build_provider(mode: str, setup: ProviderSetup) -> ProviderRun:
    """The provider actor for ``mode``; check :func:`unavailable_reason` first."""
    module = importlib.import_module(ADAPTERS[mode])
    build: Callable[[ProviderSetup], ProviderRun] = module.build
    return build(setup)
