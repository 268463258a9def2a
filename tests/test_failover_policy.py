"""The failover policy: issue 5's scenarios at the policy level, and a hypothesis state machine.

Time is the call's clock in seconds, given with every input (the policy has no clock).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from switchboard.actors.failover import (
    CallerFinishedSpeaking,
    CallerStartedSpeaking,
    CallStarted,
    Connect,
    Decision,
    DoNothing,
    FailoverPolicy,
    FailoverSettings,
    FailureReported,
    GiveUp,
    OutputProduced,
    ProgressReported,
    ProviderConnected,
    ProviderHealth,
    Reconnect,
    ResponseEnded,
    ResponseRequested,
    SwitchTo,
    Ticked,
    ToolCallStarted,
)
from switchboard.actors.messages import FailureKind

CHAIN = ("openai-realtime", "gemini-live", "cascaded", "local")
TRANSFER = "+15005550009"
DEFAULTS = FailoverSettings()


def started(
    chain: tuple[str, ...] = CHAIN,
    failover: FailoverSettings = DEFAULTS,
    transfer_number: str | None = TRANSFER,
    at_s: float = 0.0,
) -> tuple[FailoverPolicy, Decision]:
    policy = FailoverPolicy(chain, failover, transfer_number=transfer_number)
    return policy, policy.handle(CallStarted(at_s))


def greeted(policy: FailoverPolicy, at_s: float) -> float:
    """Connect and play the greeting; returns the time after it."""
    policy.handle(ProviderConnected(at_s))
    policy.handle(OutputProduced(at_s + 0.3))
    policy.handle(ResponseEnded(at_s + 2.0, greeting=True))
    return at_s + 2.0


def turn(policy: FailoverPolicy, at_s: float) -> float:
    """One complete turn: the caller speaks, the agent answers in full."""
    assert isinstance(policy.handle(CallerStartedSpeaking(at_s)), DoNothing)
    assert isinstance(policy.handle(CallerFinishedSpeaking(at_s + 1.0)), DoNothing)
    assert isinstance(policy.handle(OutputProduced(at_s + 1.6)), DoNothing)
    assert isinstance(policy.handle(OutputProduced(at_s + 1.8)), DoNothing)
    assert isinstance(policy.handle(ResponseEnded(at_s + 3.0)), DoNothing)
    return at_s + 4.0


# -- the scenarios of issue 5 ---------------------------------------------------------------


def test_primary_5xx_at_the_handshake_switches_to_link_2_which_greets() -> None:
    policy, first = started()
    assert first == Connect(0, "openai-realtime", attempt=1, greet=True)

    decision = policy.handle(FailureReported(0.2, "http_5xx", "503 Service Unavailable"))

    assert isinstance(decision, SwitchTo)
    assert (decision.link, decision.mode, decision.attempt, decision.stop_attempt) == (
        1,
        "gemini-live",
        2,
        1,
    )
    assert decision.greet and not decision.respond_now
    assert decision.failure.kind == "http_5xx"
    assert (decision.failure.mode, decision.failure.turn) == ("openai-realtime", 0)
    # The new link must connect within the connect timeout, then greet within the stall timeout.
    assert policy.deadline_s == pytest.approx(0.2 + 3.0)
    policy.handle(ProviderConnected(0.5))
    assert policy.deadline_s == pytest.approx(0.5 + 2.0)
    policy.handle(OutputProduced(0.7))
    assert policy.deadline_s == pytest.approx(0.7 + 1.5)


def test_stall_mid_answer_in_turn_1_switches_and_asks_for_the_answer_again() -> None:
    policy, _ = started()
    t = greeted(policy, 0.1)
    policy.handle(CallerFinishedSpeaking(t + 1.0))
    policy.handle(OutputProduced(t + 1.5))  # the answer begins, then nothing more arrives
    assert policy.deadline_s == pytest.approx(t + 1.5 + 1.5)
    assert policy.handle(Ticked(t + 2.99)) == DoNothing()

    decision = policy.handle(Ticked(t + 3.0))

    assert isinstance(decision, SwitchTo)
    assert (decision.mode, decision.respond_now, decision.greet) == ("gemini-live", True, False)
    assert decision.failure.kind == "stall"
    assert "in the middle of a response" in decision.failure.detail
    assert decision.failure.at_s == t + 3.0
    # After the switch the new provider owes the answer: the stall watch runs from its session.
    policy.handle(ProviderConnected(t + 3.4))
    assert policy.deadline_s == pytest.approx(t + 3.4 + 2.0)


def test_no_answer_after_the_caller_finished_speaking_is_a_stall_at_the_stall_timeout() -> None:
    policy, _ = started()
    t = greeted(policy, 0.1)
    policy.handle(CallerFinishedSpeaking(t))
    assert policy.deadline_s == pytest.approx(t + 2.0)
    decision = policy.handle(Ticked(t + 2.0))
    assert isinstance(decision, SwitchTo)
    assert decision.failure.detail == "no output within 2000 ms after the caller finished speaking"
    assert decision.respond_now


def test_progress_reports_hold_off_the_stall_watch_until_the_progress_limit() -> None:
    """A provider queued behind other calls' work (the local provider's speech workers)
    reports progress: not stalled while it does, but at most progress_limit_ms."""
    policy, _ = started()
    t = greeted(policy, 0.1)
    policy.handle(CallerFinishedSpeaking(t))
    limit_s = DEFAULTS.progress_limit_ms / 1000
    stall_s = DEFAULTS.stall_timeout_ms / 1000
    report = 0.0
    while report + 1.0 < limit_s:  # every report moves the deadline on, up to the limit
        report += 1.0
        assert isinstance(policy.handle(ProgressReported(t + report)), DoNothing)
        assert policy.deadline_s == pytest.approx(t + min(report + stall_s, limit_s))
        assert isinstance(policy.handle(Ticked(t + report + 0.1)), DoNothing)
    assert report > stall_s  # the answer was late by more than the stall timeout
    assert isinstance(policy.handle(ProgressReported(t + limit_s - 0.1)), DoNothing)
    assert policy.deadline_s == pytest.approx(t + limit_s)  # the limit, whatever it reports
    decision = policy.handle(Ticked(t + limit_s))
    assert isinstance(decision, SwitchTo) and decision.failure.kind == "stall"
    assert "progress reports are not output" in decision.failure.detail


def test_output_after_progress_restarts_the_watch_without_the_old_progress() -> None:
    """Once the answer is playing, the gap timeout applies again from scratch: progress
    reported while waiting for the answer does not stretch a gap in it."""
    policy, _ = started()
    t = greeted(policy, 0.1)
    policy.handle(CallerFinishedSpeaking(t))
    policy.handle(ProgressReported(t + 1.5))
    policy.handle(OutputProduced(t + 3.0))
    assert policy.deadline_s == pytest.approx(t + 3.0 + DEFAULTS.audio_gap_timeout_ms / 1000)


def test_progress_while_idle_changes_nothing() -> None:
    policy, _ = started()
    t = greeted(policy, 0.1)
    assert policy.deadline_s == math.inf
    assert isinstance(policy.handle(ProgressReported(t + 1.0)), DoNothing)
    policy.handle(CallerFinishedSpeaking(t + 2.0))
    assert policy.deadline_s == pytest.approx(t + 4.0)  # no credit carried from idle time


def test_stall_in_turn_4_reconnects_once_then_gives_up_with_transfer() -> None:
    policy, _ = started()
    t = greeted(policy, 0.1)
    for _ in range(3):
        t = turn(policy, t)
    assert (policy.turns_completed, policy.locked) == (3, True)
    policy.handle(CallerFinishedSpeaking(t))

    first = policy.handle(Ticked(t + 2.0))

    assert isinstance(first, Reconnect)
    assert (first.mode, first.attempt, first.stop_attempt) == ("openai-realtime", 2, 1)
    assert first.respond_now and not first.greet
    assert first.failure.turn == 3
    assert [s.reason for s in first.suppressed] == ["locked"]
    assert first.suppressed[0].detail == "3 turns completed (lock after 3)"

    second = policy.handle(FailureReported(t + 2.4, "http_5xx", "502 Bad Gateway"))

    assert second == GiveUp(
        transfer_to=TRANSFER,
        stop_attempt=2,
        failure=second.failure,  # checked below
        suppressed=second.suppressed,
    )
    assert isinstance(second, GiveUp)
    assert (second.failure.kind, second.failure.attempt) == ("http_5xx", 2)
    assert [s.reason for s in second.suppressed] == ["locked", "reconnect_used"]
    assert policy.gave_up and policy.deadline_s == math.inf
    assert policy.switches == 0


def test_without_a_transfer_number_giving_up_ends_the_call() -> None:
    policy, _ = started(chain=("local",), transfer_number=None)
    assert isinstance(policy.handle(FailureReported(1.0, "crash", "boom")), Reconnect)
    decision = policy.handle(FailureReported(2.0, "crash", "boom"))
    assert isinstance(decision, GiveUp) and decision.transfer_to is None


def test_every_link_failing_before_the_lock_gives_up() -> None:
    policy, _ = started()
    kinds: list[FailureKind] = ["http_5xx", "connect_timeout", "disconnect", "crash", "crash"]
    decisions = [policy.handle(FailureReported(float(i), kind)) for i, kind in enumerate(kinds)]

    assert [type(d) for d in decisions] == [SwitchTo, SwitchTo, SwitchTo, Reconnect, GiveUp]
    assert [getattr(d, "mode", None) for d in decisions] == [
        "gemini-live",
        "cascaded",
        "local",
        "local",
        None,
    ]
    reconnect, give_up = decisions[3], decisions[4]
    assert [s.reason for s in reconnect.suppressed] == ["max_switches"]  # type: ignore[union-attr]
    assert isinstance(give_up, GiveUp) and give_up.transfer_to == TRANSFER
    assert policy.turns_completed == 0


def test_the_end_of_the_chain_is_reported_when_switches_remain() -> None:
    policy, _ = started(chain=("openai-realtime", "local"))
    assert isinstance(policy.handle(FailureReported(0.0, "http_5xx")), SwitchTo)
    decision = policy.handle(FailureReported(1.0, "crash"))
    assert isinstance(decision, Reconnect)
    assert [s.reason for s in decision.suppressed] == ["end_of_chain"]


def test_connect_timeout_is_declared_from_the_switch_time() -> None:
    policy, _ = started()
    policy.handle(FailureReported(1.0, "http_5xx"))
    assert policy.handle(Ticked(3.99)) == DoNothing()
    decision = policy.handle(Ticked(4.0))
    assert isinstance(decision, SwitchTo)
    assert (decision.failure.kind, decision.failure.mode) == ("connect_timeout", "gemini-live")
    assert decision.failure.detail == "no session within 3000 ms"
    assert decision.greet  # still nobody has greeted the caller


def test_a_greeting_cut_short_by_a_failure_is_not_said_again() -> None:
    """Issue 11: the caller heard part of the greeting; the next link must not greet."""
    policy, _ = started()
    policy.handle(ProviderConnected(0.1))
    policy.handle(OutputProduced(0.2))  # the greeting's first audio reaches the caller
    decision = policy.handle(FailureReported(0.9, "disconnect"))
    assert isinstance(decision, SwitchTo)
    assert not decision.greet and not decision.respond_now


def test_max_switches_per_call_bounds_the_walk() -> None:
    policy, _ = started(failover=FailoverSettings(max_switches_per_call=1))
    assert isinstance(policy.handle(FailureReported(0.0, "http_5xx")), SwitchTo)
    second = policy.handle(FailureReported(1.0, "error_event", "server_error"))
    assert isinstance(second, Reconnect) and second.mode == "gemini-live"
    assert second.suppressed[0].detail == "1 switches made (at most 1)"
    assert isinstance(policy.handle(FailureReported(2.0, "disconnect")), GiveUp)


def test_a_stale_failure_of_a_replaced_provider_changes_nothing() -> None:
    policy, _ = started()
    switch = policy.handle(FailureReported(0.5, "http_5xx"))
    assert isinstance(switch, SwitchTo)
    late = policy.handle(FailureReported(0.6, "disconnect", "closed", attempt=1))
    assert isinstance(late, DoNothing) and late.failure is not None
    assert (late.failure.mode, late.failure.attempt) == ("openai-realtime", 1)
    assert "stale" in late.why
    assert (policy.attempt, policy.mode, policy.switches) == (2, "gemini-live", 1)


def test_failures_after_giving_up_are_answered_with_nothing() -> None:
    policy, _ = started(chain=("local",), failover=FailoverSettings(lock_after_turns=0))
    policy.handle(FailureReported(0.0, "crash"))
    assert isinstance(policy.handle(FailureReported(1.0, "crash")), GiveUp)
    after = policy.handle(FailureReported(2.0, "crash"))
    assert isinstance(after, DoNothing) and after.failure is not None
    assert policy.handle(Ticked(100.0)) == DoNothing()
    assert policy.handle(CallerFinishedSpeaking(101.0)) == DoNothing()
    assert policy.deadline_s == math.inf


# -- turns ---------------------------------------------------------------------------------


def test_the_greeting_an_interrupted_answer_and_a_tool_call_alone_are_not_turns() -> None:
    policy, _ = started()
    t = greeted(policy, 0.0)
    assert policy.turns_completed == 0
    # barge-in: the caller talks over the answer
    policy.handle(CallerFinishedSpeaking(t + 1.0))
    policy.handle(OutputProduced(t + 1.5))
    policy.handle(CallerStartedSpeaking(t + 2.0))
    assert policy.deadline_s == math.inf  # the caller has the floor
    policy.handle(ResponseEnded(t + 2.1, interrupted=True))
    assert policy.turns_completed == 0
    # a response that is only a tool call, then the answer with the tool's result
    policy.handle(CallerFinishedSpeaking(t + 4.0))
    policy.handle(ToolCallStarted(t + 4.5))
    assert policy.deadline_s == math.inf  # the tool runs: the provider waits for us
    policy.handle(ResponseEnded(t + 4.6))
    assert policy.turns_completed == 0
    policy.handle(ResponseRequested(t + 6.0))
    assert policy.deadline_s == pytest.approx(t + 8.0)
    policy.handle(OutputProduced(t + 6.5))
    policy.handle(ResponseEnded(t + 8.0))
    assert policy.turns_completed == 1
    assert policy.deadline_s == math.inf


def test_a_failure_while_the_tool_runs_asks_the_next_provider_to_answer() -> None:
    policy, _ = started()
    t = greeted(policy, 0.0)
    policy.handle(CallerFinishedSpeaking(t + 1.0))
    policy.handle(ToolCallStarted(t + 1.2))
    policy.handle(ResponseEnded(t + 1.3))
    decision = policy.handle(FailureReported(t + 1.4, "disconnect"))
    assert isinstance(decision, SwitchTo) and decision.respond_now and not decision.greet


def test_a_late_end_of_an_earlier_response_leaves_the_stall_watch_running() -> None:
    policy, _ = started()
    t = greeted(policy, 0.0)
    policy.handle(CallerFinishedSpeaking(t + 1.0))
    policy.handle(ResponseEnded(t + 1.1, interrupted=True))  # the barged-in answer's end
    assert policy.deadline_s == pytest.approx(t + 3.0)


def test_inputs_before_the_call_started_are_a_programming_error() -> None:
    policy = FailoverPolicy(CHAIN, DEFAULTS)
    with pytest.raises(ValueError, match="before CallStarted"):
        policy.handle(FailureReported(0.0, "crash"))
    policy.handle(CallStarted(0.0))
    with pytest.raises(ValueError, match="second CallStarted"):
        policy.handle(CallStarted(1.0))
    with pytest.raises(ValueError, match="at least one link"):
        FailoverPolicy((), DEFAULTS)


# -- the health record across calls -----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def start_call(health: ProviderHealth, chain: tuple[str, ...] = CHAIN) -> Connect:
    policy = FailoverPolicy(chain, DEFAULTS, transfer_number=TRANSFER)
    decision = policy.handle(CallStarted(0.0, health.cooldowns(chain, DEFAULTS.cooldown_seconds)))
    assert isinstance(decision, Connect)
    health.record_attempt(decision.mode)
    return decision


def test_a_new_call_skips_a_provider_that_failed_in_another_call_and_says_why() -> None:
    clock = FakeClock()
    health = ProviderHealth(clock)
    first = start_call(health)
    assert first.mode == "openai-realtime"
    health.record_failure(first.mode, "http_5xx")  # call 1's primary refused the handshake

    clock.now += 29.0
    second = start_call(health)

    assert (second.link, second.mode) == (1, "gemini-live")
    assert [(s.reason, s.mode) for s in second.suppressed] == [("cooling_down", "openai-realtime")]
    assert second.suppressed[0].detail == (
        "openai-realtime failed recently: cooling down for 1.0 s more"
    )


def test_after_the_cooldown_one_call_probes_the_provider_and_its_success_restores_it() -> None:
    clock = FakeClock()
    health = ProviderHealth(clock)
    health.record_failure("openai-realtime", "disconnect")
    clock.now += 30.0

    probe = start_call(health)
    meanwhile = start_call(health)  # while the probe is out, others still skip it

    assert (probe.mode, meanwhile.mode) == ("openai-realtime", "gemini-live")
    health.record_success("openai-realtime")
    assert start_call(health).mode == "openai-realtime"


def test_a_failed_probe_starts_a_new_cooldown() -> None:
    clock = FakeClock()
    health = ProviderHealth(clock)
    health.record_failure("openai-realtime", "http_5xx")
    clock.now += 31.0
    assert start_call(health).mode == "openai-realtime"
    health.record_failure("openai-realtime", "http_5xx")
    clock.now += 29.0
    assert start_call(health).mode == "gemini-live"


def test_a_switch_skips_links_cooling_down() -> None:
    policy, _ = started()
    cooling = {"gemini-live": 12.0, "cascaded": 3.5}
    decision = policy.handle(FailureReported(0.4, "http_5xx", cooling_down=cooling))
    assert isinstance(decision, SwitchTo) and decision.mode == "local"
    assert [(s.reason, s.link) for s in decision.suppressed] == [
        ("cooling_down", 1),
        ("cooling_down", 2),
    ]


def test_when_every_link_is_cooling_down_the_call_starts_on_the_first_one_due() -> None:
    policy = FailoverPolicy(CHAIN, DEFAULTS)
    cooling = {"openai-realtime": 20.0, "gemini-live": 4.0, "cascaded": 4.0, "local": 9.0}
    decision = policy.handle(CallStarted(0.0, cooling))
    assert isinstance(decision, Connect) and decision.mode == "gemini-live"
    assert [s.link for s in decision.suppressed] == [0, 2, 3]


# -- the state machine, explored --------------------------------------------------------------

KINDS: tuple[FailureKind, ...] = (
    "http_5xx",
    "error_event",
    "disconnect",
    "stall",
    "connect_timeout",
    "crash",
)
MODES = ("openai-realtime", "gemini-live", "cascaded", "local")


class PolicyMachine(RuleBasedStateMachine):
    """Random calls against the policy, with a model of what the supervisor would run.

    The model counts turns from whole exchanges only (the rules ``turn`` and
    ``tool_turn``); the other rules send inputs that must never complete a turn.
    """

    policy: FailoverPolicy

    @initialize(
        chain=st.lists(st.sampled_from(MODES), min_size=1, max_size=4).map(tuple),
        lock=st.integers(0, 4),
        max_switches=st.integers(0, 4),
        transfer=st.sampled_from([None, TRANSFER]),
        cooling=st.dictionaries(st.sampled_from(MODES), st.floats(0.1, 60.0), max_size=4),
    )
    def start(
        self,
        chain: tuple[str, ...],
        lock: int,
        max_switches: int,
        transfer: str | None,
        cooling: dict[str, float],
    ) -> None:
        self.settings = FailoverSettings(lock_after_turns=lock, max_switches_per_call=max_switches)
        self.policy = FailoverPolicy(chain, self.settings, transfer_number=transfer)
        self.now = 0.0
        self.cooling = cooling
        self.running: set[int] = set()
        self.connected = False
        self.gave_up = False
        self.turns = 0
        self.switches = 0
        self.reconnects = 0
        self.heard_agent = False  # the caller has heard agent audio
        decision = self.policy.handle(CallStarted(self.now, cooling))
        assert isinstance(decision, Connect) and decision.greet
        if any(mode not in cooling for mode in chain):
            assert decision.mode not in cooling
        self.apply(decision)

    # -- the model of the supervisor

    def apply(self, decision: Decision) -> None:
        match decision:
            case Connect() | SwitchTo() | Reconnect():
                assert not self.gave_up
                if not isinstance(decision, Connect):
                    assert self.running == {decision.stop_attempt}
                    self.running.discard(decision.stop_attempt)
                assert not self.running
                assert decision.mode == self.policy.chain[decision.link]
                self.running.add(decision.attempt)
                self.connected = False
            case GiveUp():
                assert self.running == {decision.stop_attempt}
                self.running.clear()
                self.gave_up = True
                self.connected = False
        if isinstance(decision, SwitchTo | Reconnect):
            assert not (decision.greet and self.heard_agent), "greeted the caller twice"
        if isinstance(decision, SwitchTo):
            assert self.turns < self.settings.lock_after_turns, "switched after the lock"
            assert decision.mode not in self.cooling, "switched to a link cooling down"
            self.switches += 1
        if isinstance(decision, Reconnect):
            self.reconnects += 1

    def feed(self, *events: object) -> None:
        for event in events:
            self.heard_agent |= isinstance(event, OutputProduced)
            decision = self.policy.handle(event)  # type: ignore[arg-type]
            assert decision == DoNothing(), f"{event!r} is not a failure but got {decision!r}"

    def advance(self, seconds: float) -> None:
        self.now += seconds

    # -- rules

    @precondition(lambda self: self.running and not self.connected)
    @rule(after=st.floats(0.0, 2.9))
    def connected_in_time(self, after: float) -> None:
        self.advance(after)
        self.feed(ProviderConnected(self.now))
        self.connected = True

    @precondition(lambda self: self.connected)
    @rule(gaps=st.lists(st.floats(0.0, 1.4), min_size=1, max_size=3))
    def turn(self, gaps: list[float]) -> None:
        self.feed(CallerFinishedSpeaking(self.now))
        for gap in gaps:
            self.advance(gap)
            self.feed(OutputProduced(self.now))
        self.feed(ResponseEnded(self.now))
        self.turns += 1

    @precondition(lambda self: self.connected)
    @rule(wait=st.floats(0.0, 5.5))
    def slow_answer_with_progress(self, wait: float) -> None:
        """An answer queued behind other work, reported every 1.5 s: never a stall
        within progress_limit_ms (12 s), however much longer than the stall timeout."""
        self.feed(CallerFinishedSpeaking(self.now))
        reported = 0.0
        while reported + 1.5 < wait:
            reported += 1.5
            self.feed(ProgressReported(self.now + reported))
            self.feed(Ticked(self.now + reported + 0.01, self.cooling))
        self.feed(OutputProduced(self.now + wait), ResponseEnded(self.now + wait + 0.5))
        self.advance(wait + 0.5)
        self.turns += 1

    @precondition(lambda self: self.connected)
    @rule()
    def tool_turn(self) -> None:
        self.feed(CallerFinishedSpeaking(self.now), ToolCallStarted(self.now + 0.5))
        self.feed(ResponseEnded(self.now + 0.6))
        self.advance(3.0)  # the tool is slow; no stall while it runs
        self.feed(ResponseRequested(self.now), OutputProduced(self.now + 0.7))
        self.feed(ResponseEnded(self.now + 1.0))
        self.advance(1.0)
        self.turns += 1

    @precondition(lambda self: self.connected)
    @rule()
    def barge_in(self) -> None:
        self.feed(CallerFinishedSpeaking(self.now), OutputProduced(self.now + 0.5))
        self.feed(CallerStartedSpeaking(self.now + 0.8))
        self.feed(ResponseEnded(self.now + 0.9, interrupted=True))
        self.advance(1.0)

    @precondition(lambda self: self.connected)
    @rule()
    def greeting(self) -> None:
        self.feed(OutputProduced(self.now), ResponseEnded(self.now + 1.0, greeting=True))
        self.advance(1.0)

    @precondition(lambda self: self.connected)
    @rule(finished=st.booleans())
    def caller_speaks(self, finished: bool) -> None:
        self.feed(CallerStartedSpeaking(self.now))
        if finished:
            self.feed(CallerFinishedSpeaking(self.now + 0.5))
        self.advance(0.5)

    @rule(modes=st.dictionaries(st.sampled_from(MODES), st.floats(0.1, 60.0), max_size=4))
    def health_changes(self, modes: dict[str, float]) -> None:
        self.cooling = modes

    @rule(
        kind=st.sampled_from(KINDS),
        stale=st.booleans(),
        after=st.floats(0.0, 1.0),
    )
    def provider_fails(self, kind: FailureKind, stale: bool, after: float) -> None:
        self.advance(after)
        attempt = self.policy.attempt - 1 if stale and self.policy.attempt > 1 else None
        event = FailureReported(self.now, kind, "injected", attempt, self.cooling)
        decision = self.policy.handle(event)
        self.check_answers_failure(decision, kind, attempt)

    @rule(seconds=st.floats(0.0, 5.0))
    def time_passes(self, seconds: float) -> None:
        deadline = self.policy.deadline_s
        self.advance(seconds)
        decision = self.policy.handle(Ticked(self.now, self.cooling))
        if self.now < deadline or self.gave_up:
            assert decision == DoNothing()
        else:
            self.check_answers_failure(decision, None, None)
            assert decision.failure is not None  # type: ignore[union-attr]
            assert decision.failure.kind in ("stall", "connect_timeout")  # type: ignore[union-attr]

    def check_answers_failure(
        self, decision: Decision, kind: FailureKind | None, attempt: int | None
    ) -> None:
        """Exactly one decision answers the failure, and it names that failure."""
        assert isinstance(decision, SwitchTo | Reconnect | GiveUp | DoNothing)
        assert decision.failure is not None
        assert decision.failure.at_s == self.now
        if kind is not None:
            assert decision.failure.kind == kind
        stale = attempt is not None
        if stale or self.gave_up:
            assert isinstance(decision, DoNothing) and decision.why
            return
        assert not isinstance(decision, DoNothing)
        assert decision.failure.attempt in self.running
        assert decision.failure.turn == self.turns
        self.apply(decision)

    # -- invariants

    @invariant()
    def at_most_one_live_provider(self) -> None:
        assert len(self.running) <= 1
        assert len(self.running) == (0 if self.gave_up else 1)
        if self.running:
            assert self.running == {self.policy.attempt}

    @invariant()
    def switches_bounded(self) -> None:
        assert self.switches <= self.settings.max_switches_per_call
        assert self.switches == self.policy.switches
        assert self.reconnects <= 1

    @invariant()
    def turns_counted(self) -> None:
        assert self.policy.turns_completed == self.turns

    @invariant()
    def a_deadline_while_a_provider_is_owed_something(self) -> None:
        if self.gave_up:
            assert self.policy.deadline_s == math.inf
        elif self.running and not self.connected:
            assert self.policy.deadline_s < math.inf  # the connect timeout runs


TestPolicyMachine = PolicyMachine.TestCase
TestPolicyMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
