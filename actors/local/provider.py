"""The ``local`` provider: the cascaded pipeline with offline stages, inside the runtime.

Caller audio -> voice activity detection -> PocketSphinx (open vocabulary for
the transcript, the agent's intents for understanding) -> the deterministic
dialogue policy (and its tool call) -> eSpeak NG -> agent audio. No network,
no keys: the default for a new installation and the last link of every
fallback chain. The stages are in :mod:`.stages`; turn taking, tool calls,
history, barge-in and the greeting are the shared
:class:`~switchboard.actors.pipeline.Pipeline`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..context import CallContext
from ..messages import ConversationItem
from ..pipeline import Pipeline
from .assets import LocalAssets
from .stages import EspeakVoice, IntentPolicy, LocalListener

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
    ) -> None:
        super().__init__(
            "local",
            ctx,
            listener=LocalListener(ctx.caller_format, assets.recognizer),
            thinker=IntentPolicy(ctx.agent),
            voice=EspeakVoice(assets, ctx.caller_format),
            conversation=conversation,
            greet=greet,
            respond_now=respond_now,
        )


def build(setup: ProviderSetup) -> LocalProvider:
    """The ``local`` provider for a call (see :mod:`switchboard.actors.providers`)."""
    return LocalProvider(
        setup.ctx,
        setup.assets.get(setup.ctx.agent),
        greet=setup.greet,
        conversation=setup.conversation,
        respond_now=setup.respond_now,
    )
