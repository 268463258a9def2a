"""The call's idle timer: how long the caller has been silent, as one moving deadline.

The supervisor tells it every sign of caller speech the live provider reports,
each provider with its own detector: speech started or stopped (OpenAI's
server VAD, Deepgram's, the local VAD), a transcript, or a piece of input
transcription (:class:`~.messages.SpeechHeard`: Gemini Live, which reports no
speech events). The timer restarts at each. While an utterance is under way
(a speech start not yet followed by its end, its transcript or a response) it
does not run, for at most :data:`MAX_UTTERANCE_S`. When it runs out, the
call ends (``no caller speech for N s``). On Trio's MockClock it fires at
exactly the virtual time it names; there is no polling.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final

import trio

__all__ = ["MAX_UTTERANCE_S", "IdleTimer"]

MAX_UTTERANCE_S: Final = 60.0
"""The longest a caller's utterance holds the idle timer: a speech start that never
ends (noise a provider took for speech, a provider that never reports the end)
stops holding it after this."""


class IdleTimer:
    """Calls back once the caller has been silent for ``timeout_s`` seconds.

    Args:
        timeout_s: the agent's ``idle_timeout_seconds``; 0 or infinity: never.
        now: when the call began (the call's clock, ``trio.current_time()``).
    """

    def __init__(self, timeout_s: float, now: float) -> None:
        self.timeout_s = timeout_s if timeout_s and not math.isinf(timeout_s) else math.inf
        self._last_s = now
        self._speaking_since_s: float | None = None
        self._scope: trio.CancelScope | None = None

    @property
    def speaking(self) -> bool:
        """An utterance is under way (started, not yet ended)."""
        return self._speaking_since_s is not None

    @property
    def deadline(self) -> float:
        """When the caller will have been silent for ``timeout_s`` (the call's clock)."""
        last = self._last_s
        if self._speaking_since_s is not None:
            last = max(last, self._speaking_since_s + MAX_UTTERANCE_S)
        return last + self.timeout_s

    def caller_spoke(self, now: float, *, speaking: bool | None = None) -> None:
        """A sign of caller speech at ``now``: the timer restarts. ``speaking``: an
        utterance begins (True) or ends (False); None: no boundary (a piece of it)."""
        self._last_s = now
        if speaking is False:
            self._speaking_since_s = None
        elif speaking and self._speaking_since_s is None:
            self._speaking_since_s = now
        self._move()

    def utterance_over(self, now: float) -> None:
        """The utterance under way, if any, is over (a response began, a new provider)."""
        if self._speaking_since_s is not None:
            self.caller_spoke(now, speaking=False)

    def _move(self) -> None:
        if self._scope is not None:
            self._scope.deadline = self.deadline

    async def run(self, expired: Callable[[], Awaitable[None]]) -> None:
        """Wait until the caller has been silent for ``timeout_s``; then ``expired()``."""
        if math.isinf(self.timeout_s):
            return
        while True:
            with trio.CancelScope(deadline=self.deadline) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            if self.deadline <= trio.current_time():
                await expired()
                return
