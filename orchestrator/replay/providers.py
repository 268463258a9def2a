"""The replay's providers: each instance the supervisor starts plays a recorded one.

The instance the call had under the same name (``<mode>#<generation>``) plays
back when it started the same way (greeting or not, owing an answer or not); a
what-if that starts instances differently gets the first unused recorded
instance of the mode that started the same way, then any unused one of the
mode. Where the recording has no ``local`` instance left, or the what-if changed
what the local provider decides from (the agent's greeting, intents, replies,
hours, tools: anything but its failover, recording and chain settings), the
local provider runs as its stand-in (:mod:`switchboard.actors.local.transcribed`: the agent's
intent policy on what the call heard, a silent voice of the right length).
Another mode with nothing recorded cannot run in a replay (it would be a live
provider on virtual time): it is refused at the start of the call
(``provider.skipped``, as a mode without credentials is), or, once every
recording of the mode is spent, fails at once so the supervisor moves on.
:attr:`ReplayProviders.played` says what played for what.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import trio

from switchboard.actors.context import EventSink
from switchboard.actors.failover.health import ProviderHealth
from switchboard.actors.local.transcribed import heard_script, transcribed
from switchboard.actors.messages import Outbox, ProviderFailed, ToProvider
from switchboard.actors.providers import ProviderSetup
from switchboard.actors.providers.recorded import RecordedProvider
from switchboard.actors.supervisor import ProviderRun

from ..agents import AgentSpec
from .recorded_call import RecordedCall, RecordedInstance, by_mode
from .what_if import decisions_changed

__all__ = ["STAND_IN", "RecordedHealth", "ReplayProviders"]

STAND_IN = "local stand-in (the agent's intents on the recorded transcripts, a silent voice)"


class ReplayProviders:
    """A :class:`~..call.ProviderCatalog` over the recorded instances of ``call``."""

    def __init__(self, call: RecordedCall, agent: AgentSpec | None = None) -> None:
        self._call = call
        self._local_changed = agent is not None and decisions_changed(call.agent, agent)
        self._modes = by_mode(call.instances)
        self._used: set[str] = set()
        self._heard = heard_script(call.events)
        self.played: list[dict[str, Any]] = []

    def unavailable(self, mode: str) -> str | None:
        if mode in self._call.skipped:
            return self._call.skipped[mode]  # as the call found it
        if mode in self._modes or mode in self._call.chain or mode == "local":
            return None
        return (
            f"provider mode {mode!r} has no recording in this trace"
            " (a replay plays recorded providers only)"
        )

    def build(self, mode: str, setup: ProviderSetup) -> ProviderRun:
        instance = None if mode == "local" and self._local_changed else self._pick(mode, setup)
        if instance is None and mode == "local":
            self.played.append({"source": setup.source, "played": STAND_IN})
            return transcribed(
                setup.ctx,
                self._heard,
                greet=setup.greet,
                conversation=setup.conversation,
                respond_now=setup.respond_now,
            )
        if instance is None:
            self.played.append({"source": setup.source, "played": None})
            return _no_recording(mode, setup.source)
        self._used.add(instance.source)
        self.played.append({"source": setup.source, "played": instance.source})
        return RecordedProvider(
            instance.entries, recorded_start_s=instance.start_ms / 1000.0, t0=setup.ctx.t0
        )

    def _pick(self, mode: str, setup: ProviderSetup) -> RecordedInstance | None:
        same = self._call.instances.get(setup.source)
        if same is not None and same.source not in self._used and _starts_as(same, setup):
            return same
        unused = [i for i in self._modes.get(mode, []) if i.source not in self._used]
        alike = [i for i in unused if _starts_as(i, setup)]
        candidates = alike or unused
        return candidates[0] if candidates else None


class RecordedHealth(ProviderHealth):
    """The replay's provider health: what the call's own failures open, as in the runtime,
    and the cooldowns the call found at its start (other calls' failures, shared by the
    server's process) as the recording tells them. A cooldown ended at the recorded time
    (``cooling_ends``: mode -> ``t_ms``), moved by the difference when a what-if changes
    ``failover.cooldown_seconds`` from ``recorded_cooldown_s``."""

    def __init__(self, t0: float, cooling_ends: dict[str, float], recorded_cooldown_s: float):
        super().__init__(trio.current_time)
        self._failed_at = {
            mode: t0 + end_ms / 1000.0 - recorded_cooldown_s
            for mode, end_ms in cooling_ends.items()
        }

    def cooldowns(self, modes: Iterable[str], cooldown_seconds: float) -> Mapping[str, float]:
        modes = list(modes)
        skipped = dict(super().cooldowns(modes, cooldown_seconds))
        now = trio.current_time()
        for mode in modes:
            failed_at = self._failed_at.get(mode)
            wait = -1.0 if failed_at is None else failed_at + cooldown_seconds - now
            if wait > 0:
                skipped[mode] = max(wait, skipped.get(mode, 0.0))
        return skipped


def _starts_as(instance: RecordedInstance, setup: ProviderSetup) -> bool:
    return instance.greet == setup.greet and instance.respond_now == setup.respond_now


def _no_recording(mode: str, source: str) -> ProviderRun:
    async def run(
        inbox: trio.MemoryReceiveChannel[ToProvider], outbox: Outbox, events: EventSink
    ) -> None:
        detail = f"no recording left for {source}: a replay plays recorded providers only"
        await outbox.send(ProviderFailed(mode, "crash", detail))
        await trio.sleep_forever()

    return run
