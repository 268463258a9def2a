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
:class:`FailureReported`. Output of a response the supervisor drops (a
truncated one) must not be fed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, final

from ..messages import FailureKind
from .settings import FailoverSettings

__all__ = [
    "CallStarted",
    "CallerFinishedSpeaking",
    "CallerStartedSpeaking",
    "Connect",
    "Decision",
    "DoNothing",
    "FailoverInput",
    "FailoverPolicy",
    "Failure",
    "FailureReported",
    "GiveUp",
    "OutputProduced",
    "ProviderConnected",
    "Reconnect",
    "ResponseEnded",
    "ResponseRequested",
    "Suppression",
    "SuppressionReason",
    "SwitchTo",
    "Ticked",
    "ToolCallStarted",
]


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


# -- inputs: what happened ------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class CallStarted:
    """The call began. ``cooling_down``: modes to skip -> seconds of cooldown left
    (:meth:`ProviderHealth.cooldowns <.health.ProviderHealth.cooldowns>`)."""

    at_s: float
    cooling_down: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cooling_down", _frozen(self.cooling_down))


@final
@dataclass(frozen=True, slots=True)
class ProviderConnected:
    """The current provider's session is established (``ProviderReady``)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class OutputProduced:
    """The current provider produced output the caller will hear (agent audio)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class ResponseEnded:
    """A response ended (``ResponseDone``); ``greeting``: it was the greeting;
    ``interrupted``: the caller barged in before it finished."""

    at_s: float
    greeting: bool = False
    interrupted: bool = False


@final
@dataclass(frozen=True, slots=True)
class CallerStartedSpeaking:
    """Voice activity on the caller's side (``SpeechStarted``)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class CallerFinishedSpeaking:
    """The caller's utterance ended (``SpeechStopped``): an answer is now owed."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class ResponseRequested:
    """The supervisor asked the provider for a response (a tool result was sent)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """The provider asked for a tool call: it waits for us, not we for it (no stall)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class FailureReported:
    """A provider failed (``ProviderFailed``).

    ``attempt`` is the attempt the failure belongs to (from the decision that
    started it); a failure of an attempt already replaced is stale and
    ignored. None means the current attempt. ``cooling_down`` as in
    :class:`CallStarted`, read after recording this failure in the health record.
    """

    at_s: float
    kind: FailureKind
    detail: str = ""
    attempt: int | None = None
    cooling_down: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cooling_down", _frozen(self.cooling_down))


@final
@dataclass(frozen=True, slots=True)
class Ticked:
    """Time passed: the supervisor's watchdog reached :attr:`FailoverPolicy.deadline_s`.

    ``cooling_down`` as in :class:`CallStarted` (a tick may turn into a switch).
    """

    at_s: float
    cooling_down: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cooling_down", _frozen(self.cooling_down))


FailoverInput = (
    CallStarted
    | ProviderConnected
    | OutputProduced
    | ResponseEnded
    | CallerStartedSpeaking
    | CallerFinishedSpeaking
    | ResponseRequested
    | ToolCallStarted
    | FailureReported
    | Ticked
)


# -- decisions: what to do ----------------------------------------------------------------

SuppressionReason = Literal[
    "locked", "max_switches", "cooling_down", "end_of_chain", "reconnect_used"
]
"""Why a switch (or the reconnect) was not made:

- ``locked``: ``lock_after_turns`` turns have completed;
- ``max_switches``: ``max_switches_per_call`` switches were made already;
- ``cooling_down``: the link's mode failed recently (``link`` and ``mode`` say which);
- ``end_of_chain``: no usable link is left after the current one;
- ``reconnect_used``: the call's one reconnect was spent already.
"""


@final
@dataclass(frozen=True, slots=True)
class Suppression:
    """A switch not made, and why (one ``failover.suppressed`` event each)."""

    reason: SuppressionReason
    detail: str
    link: int | None = None
    mode: str | None = None


@final
@dataclass(frozen=True, slots=True)
class Failure:
    """The failure a decision answers (the ``provider.failed`` event).

    ``link``/``mode``/``attempt``: the provider that failed; ``turn``: turns
    completed when it failed; ``at_s``: when (the call's clock, seconds).
    """

    kind: FailureKind
    detail: str
    link: int
    mode: str
    attempt: int
    turn: int
    at_s: float


@final
@dataclass(frozen=True, slots=True)
class Connect:
    """Start the call's first provider: chain link ``link`` (``mode``), which greets.

    ``suppressed``: links skipped because they are cooling down.
    """

    link: int
    mode: str
    attempt: int
    greet: bool = True
    suppressed: tuple[Suppression, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class SwitchTo:
    """Cancel attempt ``stop_attempt``; start chain link ``link`` (``mode``) with the
    conversation so far as attempt ``attempt``.

    ``greet``: the greeting has not been heard yet, the new provider says it;
    ``respond_now``: an answer was owed or under way, the new provider gives it
    at once. ``suppressed``: links skipped on the way (cooling down).
    """

    link: int
    mode: str
    attempt: int
    stop_attempt: int
    greet: bool
    respond_now: bool
    failure: Failure
    suppressed: tuple[Suppression, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class Reconnect:
    """Cancel attempt ``stop_attempt``; start the same link again (the call's one
    reconnect) as attempt ``attempt``, with the conversation so far.

    ``greet``/``respond_now`` as in :class:`SwitchTo`; ``suppressed`` says why
    this is not a switch.
    """

    link: int
    mode: str
    attempt: int
    stop_attempt: int
    greet: bool
    respond_now: bool
    failure: Failure
    suppressed: tuple[Suppression, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class GiveUp:
    """Cancel attempt ``stop_attempt``; play the apology, then transfer the caller to
    ``transfer_to`` or, when None, end the call (the ``failover.exhausted`` event).

    ``suppressed`` says why neither a switch nor a reconnect was made.
    """

    transfer_to: str | None
    stop_attempt: int
    failure: Failure
    suppressed: tuple[Suppression, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class DoNothing:
    """Carry on. ``failure`` is set when this answers a failure that needs nothing
    (stale, or the call already gave up), with ``why``."""

    failure: Failure | None = None
    why: str = ""


Decision = Connect | SwitchTo | Reconnect | GiveUp | DoNothing

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
        self._awaiting_what = ""
        self._turns = 0
        self._switches = 0
        self._reconnects = 0
        self._greeted = False  # the greeting ended (heard, or cut short by the caller)
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
        return math.inf if timeout_ms is None else self._since_s + timeout_ms / 1000.0

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
                self._output_since_due = True
                self._watch("speaking", at_s)
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

    def _cooling(self, link: int, cooling: Mapping[str, float]) -> Suppression:
        mode = self.chain[link]
        detail = f"{mode} failed recently: cooling down for {cooling[mode]:.1f} s more"
        return Suppression("cooling_down", detail, link, mode)

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
        """``(greet, respond_now)`` for the next provider."""
        greet = not self._greeted
        return greet, self._answer_due and not greet
