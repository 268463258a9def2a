"""The ``local`` provider: the cascaded pipeline with offline stages, inside the runtime.

Caller audio -> voice activity detection -> PocketSphinx (open vocabulary for
the transcript, the agent's intents for understanding), streamed to a speech
worker process while the caller speaks -> the deterministic dialogue policy
(and its tool call) -> eSpeak NG (in a worker) -> agent audio. No network,
no keys: the default for a new installation and the last link of every
fallback chain. The stages are in :mod:`.listener` and :mod:`.stages`; turn
taking, tool calls, history, barge-in and the greeting are the shared
:class:`~switchboard.actors.pipeline.Pipeline`'s.

Besides the pipeline's messages, the provider reports its own progress
(:class:`~switchboard.actors.messages.ProviderWorking`, :mod:`.progress`)
while an answer waits on recognition or synthesis in the shared workers, so
queueing there is not taken for a stall.

Nothing goes on the call's tape (``ctx.tape.provider``): the provider has no
wire, it is deterministic given the caller's audio and the agent, and what it
said is on the agent track and in the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from ..context import CallContext, EventSink
from ..messages import ConversationItem, Outbox, ToProvider
from ..pipeline import Pipeline
from .assets import LocalAssets
from .listener import LocalListener
from .progress import PROGRESS_INTERVAL_S, WorkTracker, report_progress
from .stages import EspeakVoice, IntentPolicy

if TYPE_CHECKING:
    from ..providers import ProviderSetup


class LocalProvider(Pipeline):
    """The pipeline wired with the agent's recognizer, policy and eSpeak voice."""

    def __init__(
        self,
        ctx: CallContext,
        assets: LocalAssets,
        *,
        greet: bool = True,
        conversation: Sequence[ConversationItem] = (),
        respond_now: bool = False,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
    ) -> None:
        self.work = WorkTracker()
        self.progress_interval_s = progress_interval_s
        super().__init__(
            "local",
            ctx,
            listener=LocalListener(
                ctx.caller_format, assets.grammar, assets.speech_service, self.work
            ),
            thinker=IntentPolicy(ctx.agent),
            voice=EspeakVoice(assets, ctx.caller_format, self.work),
            conversation=conversation,
            greet=greet,
            respond_now=respond_now,
        )

    async def __call__(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        """The pipeline (:meth:`Pipeline.__call__`), with progress reports beside it."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report_progress, self.work, outbox, self.progress_interval_s)
            await super().__call__(inbox, outbox, events)
            nursery.cancel_scope.cancel()


def build(setup: ProviderSetup) -> LocalProvider:
    """The ``local`` provider for a call (see :mod:`switchboard.actors.providers`)."""
    return LocalProvider(
        setup.ctx,
        setup.assets.get(setup.ctx.agent),
        greet=setup.greet,
        conversation=setup.conversation,
        respond_now=setup.respond_now,
    )
