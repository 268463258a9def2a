"""The failover policy of one call: what happened in, what to do out. Pure code.

The supervisor tells the policy what happened (frozen dataclasses named in the
past tense: :class:`CallStarted`, :class:`ProviderConnected`,
:class:`OutputProduced`, ...) and gets back exactly one decision per input
(imperatives: :class:`Connect`, :class:`SwitchTo`, :class:`Reconnect`,
:class:`GiveUp`, :class:`DoNothing`). There is no Trio and no clock inside:
every input carries its time ``at_s`` (the call's clock in seconds,
``trio.current_time()``), and the policy says when it next wants to look
(:attr:`FailoverPolicy.deadline_s`). The rules are DESIGN.md's "failover
supervisor" and issue 5:

- Failures: a :class:`FailureReported` (``http_5xx``, ``error_event``,
  ``disconnect``, ``crash``, ... as the adapter reported it) or a deadline
  passed (seen on :class:`Ticked`): no session within ``connect_timeout_ms``
  (``connect_timeout``); no output within ``stall_timeout_ms`` after the
  caller finished speaking, a response was requested or a session opened
  with a greeting or an answer owed (``stall``); a gap longer than
  ``audio_gap_timeout_ms`` between outputs in the middle of a response
  (``stall``).
- A failure before the lock switches to the next link of the chain that is not
  cooling down (:mod:`.health`), while ``max_switches_per_call`` allows.
- The lock: once ``lock_after_turns`` turns have completed there is no switch.
  A turn is complete when a response that followed a finished caller utterance
  ends uninterrupted after producing output (the greeting does not count, nor a
  response made only of a tool call).
- When no switch is possible (locked, chain exhausted, switches used up), the
  call's one reconnect of the same link is spent; after that, the policy gives
  up: the apology, then the transfer (or the end of the call when the agent has
  no transfer number).
- Every switch not made is explained by a :class:`Suppression` on the decision
  (the ``failover.suppressed`` events).

Driving it from the supervisor (one policy per call)::

    chain = (agent.mode, *agent.fallback)
    policy = FailoverPolicy(chain, agent.failover, transfer_number=agent.transfer_number)
    cooling = health.cooldowns(chain, agent.failover.cooldown_seconds)
    decision = policy.handle(CallStarted(trio.current_time(), cooling))   # -> Connect
    # after EVERY handle(): watchdog_scope.deadline = policy.deadline_s
    # when the watchdog's scope expires: policy.handle(Ticked(now, cooling))

    match decision:
        case Connect(link=link, mode=mode, attempt=n, greet=greet): ...
        case SwitchTo() | Reconnect():  # cancel stop_attempt's nursery, start the link
            ...                         # with the conversation, greet and respond_now
        case GiveUp(transfer_to=number): ...   # apology, then transfer or end
        case DoNothing(): ...

Inputs to feed, from the supervisor's messages: ``ProviderReady`` ->
:class:`ProviderConnected`; ``AgentAudio`` forwarded to the caller (and
``AgentTranscript``) -> :class:`OutputProduced`; ``ResponseDone`` ->
:class:`ResponseEnded`; ``SpeechStarted`` / ``SpeechStopped`` ->
:class:`CallerStartedSpeaking` / :class:`CallerFinishedSpeaking`;
``ToolCallRequested`` -> :class:`ToolCallStarted`; a ``ToolResult`` sent to the
provider -> :class:`ResponseRequested`; ``ProviderFailed`` ->
:class:`FailureReported`; ``ProviderWorking`` -> :class:`ProgressReported`.
Output of a response the supervisor drops (a truncated one) must not be fed,
nor anything from a provider already replaced (a late
:class:`FailureReported` of an old ``attempt`` is recognised and ignored).
Only :class:`ProviderConnected` ends the connect watch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, final

from ..messages import FailureKind
from .decisions import (
    Connect,
    Decision,
    DoNothing,
    Failure,
    GiveUp,
    Reconnect,
    Suppression,
    SwitchTo,
)
from .inputs import (
    CallerFinishedSpeaking,
    CallerStartedSpeaking,
    CallStarted,
    FailoverInput,
    FailureReported,
    OutputProduced,
    ProgressReported,
    ProviderConnected,
    ResponseEnded,
    ResponseRequested,
    Ticked,
    ToolCallStarted,
)
from .settings import FailoverSettings

__all__ = ["FailoverPolicy"]

_CARRY_ON = DoNothing()

_Phase = Literal["connecting", "awaiting", "speaking", "idle", "down"]


@final
class FailoverPolicy:
    """The failover state machine of one call (see the module docstring).

    Args:
        chain: the agent's fallback chain, ``(agent.mode, *agent.fallback)``;
            links are indexes into it (a mode may appear twice).
        settings: the agent's :class:`FailoverSettings`.
        transfer_number: where :class:`GiveUp` sends the caller (E.164), or None
            to end the call after the apology.

    Raises:
        ValueError: ``chain`` is empty.
    """

    def __init__(
        self,
        chain: Sequence[str],
        settings: FailoverSettings,
        *,
        transfer_number: str | None = None,
    ) -> None:
        if not chain:
            raise ValueError("the fallback chain must have at least one link")
        self.chain: tuple[str, ...] = tuple(chain)
        self.settings = settings
        self.transfer_number = transfer_number
        self._started = False
        self._link = 0
        self._attempt = 0
        self._links: list[int] = []  # the link of each attempt (attempt n at index n - 1)
        self._phase: _Phase = "connecting"
        self._since_s = 0.0  # when the current phase's clock started
        self._progress_s: float | None = None  # the last progress report since then
        self._awaiting_what = ""
        self._turns = 0
        self._switches = 0
        self._reconnects = 0
        self._greeted = False  # the caller heard agent audio, or the greeting ended
        self._answer_due = False  # the caller is owed an answer
        self._utterance_pending = False  # a finished caller utterance not yet answered
        self._output_since_due = False  # output produced since the answer became due

    # -- what the supervisor reads

    @property
    def link(self) -> int:
        """The current link (index into :attr:`chain`)."""
        return self._link

    @property
    def mode(self) -> str:
        """The current link's provider mode."""
        return self.chain[self._link]

    @property
    def attempt(self) -> int:
        """The current attempt (1 for the call's first provider, +1 per start)."""
        return self._attempt

    @property
    def turns_completed(self) -> int:
        return self._turns

    @property
    def switches(self) -> int:
        return self._switches

    @property
    def reconnects(self) -> int:
        return self._reconnects

    @property
    def locked(self) -> bool:
        """``lock_after_turns`` turns have completed: no more switches."""
        return self._turns >= self.settings.lock_after_turns

    @property
    def gave_up(self) -> bool:
        return self._phase == "down"

    @property
    def deadline_s(self) -> float:
        """When the current provider is declared failed unless something happens
        first (the call's clock, seconds), or ``math.inf``: no deadline.

        Set the supervisor's watchdog cancel scope to it after every
        :meth:`handle`, and feed :class:`Ticked` when the scope expires.
        """
        timeout_ms = {
            "connecting": self.settings.connect_timeout_ms,
            "awaiting": self.settings.stall_timeout_ms,
            "speaking": self.settings.audio_gap_timeout_ms,
        }.get(self._phase)
        if timeout_ms is None:
            return math.inf
        timeout_s = timeout_ms / 1000.0
        deadline = self._since_s + timeout_s
        if self._progress_s is not None:
            limit = self._since_s + self.settings.progress_limit_ms / 1000.0
            deadline = max(deadline, min(self._progress_s + timeout_s, limit))
        return deadline

    # -- the state machine

    def handle(self, event: FailoverInput) -> Decision:
        """Take one input, return the one decision it calls for.

        Raises:
            ValueError: an input before :class:`CallStarted`, or a second
                :class:`CallStarted` (the supervisor's bug, not the provider's).
        """
        if isinstance(event, CallStarted) == self._started:
            problem = "a second CallStarted" if self._started else "an input before CallStarted"
            raise ValueError(f"failover policy got {problem}: {event!r}")
        if self._phase == "down" and not isinstance(event, FailureReported | Ticked):
            return _CARRY_ON
        match event:
            case CallStarted(at_s=at_s, cooling_down=cooling):
                return self._start(at_s, cooling)
            case ProviderConnected(at_s=at_s):
                if self._phase == "connecting":
                    self._await_if_owed(at_s)
            case OutputProduced(at_s=at_s):
                self._greeted = True  # the caller has heard the agent: never greet again
                self._output_since_due = True
                self._watch("speaking", at_s)
            case ProgressReported(at_s=at_s):
                if self._phase in ("awaiting", "speaking"):
                    self._progress_s = max(at_s, self._progress_s or at_s)
            case ResponseEnded(greeting=greeting, interrupted=interrupted):
                self._response_ended(greeting, interrupted)
            case CallerStartedSpeaking():
                self._answer_due = False  # the caller has the floor; the answer comes later
                self._watch("idle", event.at_s)
            case CallerFinishedSpeaking(at_s=at_s):
                self._utterance_pending = True
                self._owe_answer(at_s, "after the caller finished speaking")
            case ResponseRequested(at_s=at_s):
                self._owe_answer(at_s, "after a response was requested")
            case ToolCallStarted(at_s=at_s):
                self._watch("idle", at_s)
            case FailureReported(at_s=at_s, kind=kind, detail=detail):
                return self._fail(at_s, kind, detail, event.attempt, event.cooling_down)
            case Ticked(at_s=at_s, cooling_down=cooling):
                return self._tick(at_s, cooling)
        return _CARRY_ON

    def _watch(self, phase: _Phase, at_s: float, what: str = "") -> None:
        """Move the stall watch to ``phase`` from ``at_s`` (not while connecting)."""
        if self._phase != "connecting":
            self._phase, self._since_s, self._awaiting_what = phase, at_s, what
            self._progress_s = None

    def _await_if_owed(self, at_s: float) -> None:
        """The session is up: watch for the greeting or the owed answer, else idle."""
        self._phase = "idle"
        if not self._greeted:
            self._watch("awaiting", at_s, "after the session opened, for the greeting")
        elif self._answer_due:
            self._watch("awaiting", at_s, "after the session opened, for the owed answer")

    def _owe_answer(self, at_s: float, what: str) -> None:
        self._answer_due = True
        self._output_since_due = False
        self._watch("awaiting", at_s, what)

    def _response_ended(self, greeting: bool, interrupted: bool) -> None:
        if greeting:
            self._greeted = True
        elif interrupted:
            self._answer_due = False  # the caller barged in and will speak again
        elif self._output_since_due:
            self._answer_due = False
            if self._utterance_pending:
                self._utterance_pending = False
                self._turns += 1
        if self._phase == "speaking":
            self._phase = "idle"
        # While "awaiting", the owed answer has not begun: the end of an earlier response
        # (a late ResponseDone after a barge-in) leaves the stall watch running.

    def _start(self, at_s: float, cooling: Mapping[str, float]) -> Decision:
        self._started = True
        usable = [i for i, mode in enumerate(self.chain) if mode not in cooling]
        if usable:
            link = usable[0]
            skipped = range(link)
        else:  # every link is cooling down: the one due first
            link = min(range(len(self.chain)), key=lambda i: (cooling[self.chain[i]], i))
            skipped = range(len(self.chain))
        suppressed = tuple(self._cooling(i, cooling) for i in skipped if i != link)
        self._begin(link, at_s)
        return Connect(link, self.chain[link], self._attempt, True, suppressed)

    def _begin(self, link: int, at_s: float) -> None:
        self._link = link
        self._attempt += 1
        self._links.append(link)
        self._phase, self._since_s, self._awaiting_what = "connecting", at_s, ""
        self._progress_s = None

    def _cooling(self, link: int, cooling: Mapping[str, float]) -> Suppression:
        mode = self.chain[link]
        detail = f"{mode} failed recently: cooling down for {cooling[mode]:.1f} s more"
        return Suppression("cooling_down", detail, link, mode, round(cooling[mode] * 1000.0, 1))

    def _tick(self, at_s: float, cooling: Mapping[str, float]) -> Decision:
        if self._phase == "down" or at_s < self.deadline_s:
            return _CARRY_ON
        if self._phase == "connecting":
            ms = self.settings.connect_timeout_ms
            return self._fail(at_s, "connect_timeout", f"no session within {ms} ms", None, cooling)
        if self._phase == "speaking":
            ms = self.settings.audio_gap_timeout_ms
            detail = f"no output for {ms} ms in the middle of a response"
        else:
            ms = self.settings.stall_timeout_ms
            detail = f"no output within {ms} ms {self._awaiting_what}"
        if self._progress_s is not None:
            waited_ms = round((at_s - self._since_s) * 1000)
            detail += f" (still working after {waited_ms} ms: progress reports are not output)"
        return self._fail(at_s, "stall", detail, None, cooling)

    def _fail(
        self,
        at_s: float,
        kind: FailureKind,
        detail: str,
        attempt: int | None,
        cooling: Mapping[str, float],
    ) -> Decision:
        failed = self._attempt if attempt is None else attempt
        link = self._links[failed - 1] if 1 <= failed <= len(self._links) else self._link
        failure = Failure(kind, detail, link, self.chain[link], failed, self._turns, at_s)
        if self._phase == "down":
            return DoNothing(failure, "the call has already given up on its providers")
        if failed != self._attempt:
            return DoNothing(failure, f"stale: attempt {failed} was replaced already")
        suppressed: list[Suppression] = []
        settings = self.settings
        if self.locked:
            detail = f"{self._turns} turns completed (lock after {settings.lock_after_turns})"
            suppressed.append(Suppression("locked", detail))
        elif self._switches >= settings.max_switches_per_call:
            detail = f"{self._switches} switches made (at most {settings.max_switches_per_call})"
            suppressed.append(Suppression("max_switches", detail))
        else:
            for link in range(self._link + 1, len(self.chain)):
                if self.chain[link] in cooling:
                    suppressed.append(self._cooling(link, cooling))
                    continue
                greet, respond_now = self._owed()
                self._switches += 1
                self._begin(link, at_s)
                return SwitchTo(
                    link, self.mode, self._attempt, failed, greet, respond_now, failure,
                    tuple(suppressed),
                )  # fmt: skip
            detail = f"no usable link after link {self._link} ({self.mode})"
            suppressed.append(Suppression("end_of_chain", detail))
        if self._reconnects == 0:
            greet, respond_now = self._owed()
            self._reconnects += 1
            self._begin(self._link, at_s)
            return Reconnect(
                self._link, self.mode, self._attempt, failed, greet, respond_now, failure,
                tuple(suppressed),
            )  # fmt: skip
        suppressed.append(Suppression("reconnect_used", "the call's one reconnect was used"))
        self._phase = "down"
        return GiveUp(self.transfer_number, failed, failure, tuple(suppressed))

    def _owed(self) -> tuple[bool, bool]:
        """``(greet, respond_now)`` for the next provider: greet only a caller who has
        heard no agent audio yet (a greeting cut short by a failure is not said
        twice); answer at once when an answer is owed."""
        greet = not self._greeted
        return greet, self._answer_due and not greet
