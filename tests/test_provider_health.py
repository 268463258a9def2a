"""The process-wide provider health record: cooldown, one probe at a time, recovery.

Time comes from an injected clock: a plain counter here, and ``trio.current_time``
on Trio's MockClock in the last test (how the runtime wires it).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.actors.failover import ModeHealth, ProviderHealth

OPENAI, GEMINI = "openai-realtime", "gemini-live"


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_healthy_provider_is_never_skipped(clock: FakeClock) -> None:
    health = ProviderHealth(clock)
    assert health.cooldowns([OPENAI, GEMINI], 30) == {}
    assert health.record_attempt(OPENAI) is False
    health.record_success(OPENAI)
    assert health.status(OPENAI) == ModeHealth(OPENAI, "closed")


def test_a_failed_provider_is_skipped_for_the_cooldown_and_only_that_one(clock: FakeClock) -> None:
    health = ProviderHealth(clock)
    health.record_failure(OPENAI, "http_5xx")
    clock.now += 10.0
    assert health.cooldowns([OPENAI, GEMINI], 30) == pytest.approx({OPENAI: 20.0})
    # The cooldown is the agent's: an agent with a shorter one probes sooner.
    assert health.cooldowns([OPENAI], 10) == {}
    clock.now += 20.0
    assert health.cooldowns([OPENAI, GEMINI], 30) == {}
    status = health.status(OPENAI)
    assert (status.state, status.last_failure_kind, status.failed_at_s) == ("open", "http_5xx", 500)


def test_one_probe_at_a_time_then_success_closes_the_circuit(clock: FakeClock) -> None:
    health = ProviderHealth(clock, probe_lease_s=15)
    health.record_failure(OPENAI, "stall")
    clock.now += 30.0

    assert health.record_attempt(OPENAI) is True  # the first call after the cooldown probes
    assert health.status(OPENAI).state == "half_open"
    clock.now += 1.0
    assert health.cooldowns([OPENAI], 30) == pytest.approx({OPENAI: 14.0})  # others wait

    health.record_success(OPENAI)
    assert health.cooldowns([OPENAI], 30) == {}
    assert health.status(OPENAI).state == "closed"


def test_a_failed_probe_opens_the_circuit_for_a_new_cooldown(clock: FakeClock) -> None:
    health = ProviderHealth(clock)
    health.record_failure(OPENAI, "http_5xx")
    clock.now += 31.0
    health.record_attempt(OPENAI)
    clock.now += 2.0
    health.record_failure(OPENAI, "connect_timeout")
    assert health.cooldowns([OPENAI], 30) == pytest.approx({OPENAI: 30.0})
    assert health.status(OPENAI).consecutive_failures == 2


def test_a_probe_that_never_reports_stops_blocking_after_its_lease(clock: FakeClock) -> None:
    health = ProviderHealth(clock, probe_lease_s=15)
    health.record_failure(OPENAI, "disconnect")
    clock.now += 30.0
    health.record_attempt(OPENAI)  # that caller hangs up during the handshake
    clock.now += 14.9
    assert OPENAI in health.cooldowns([OPENAI], 30)
    clock.now += 0.1
    assert health.cooldowns([OPENAI], 30) == {}


def test_success_of_a_session_opened_before_the_failure_does_not_close_it(
    clock: FakeClock,
) -> None:
    health = ProviderHealth(clock)
    health.record_attempt(OPENAI)  # call A connects to a healthy provider ...
    health.record_failure(OPENAI, "stall")  # ... call B's session on it stalls
    health.record_success(OPENAI)  # call A's late success proves nothing about B's stall
    assert OPENAI in health.cooldowns([OPENAI], 30)


def test_probe_lease_must_be_positive(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="probe_lease_s"):
        ProviderHealth(clock, probe_lease_s=0)


def test_concurrent_threads_leave_a_consistent_record(clock: FakeClock) -> None:
    health = ProviderHealth(clock)

    def hammer() -> None:
        for _ in range(2000):
            health.record_failure(OPENAI, "http_5xx")
            health.cooldowns([OPENAI, GEMINI], 30)
            health.record_attempt(OPENAI)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert health.status(OPENAI).consecutive_failures == 8000


_Step = st.one_of(
    st.tuples(st.just("fail"), st.sampled_from([OPENAI, GEMINI])),
    st.tuples(st.just("attempt"), st.sampled_from([OPENAI, GEMINI])),
    st.tuples(st.just("succeed"), st.sampled_from([OPENAI, GEMINI])),
    st.tuples(st.just("wait"), st.floats(0.0, 40.0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_Step, max_size=30))
def test_skipped_exactly_while_cooling_down_or_probed(steps: list[tuple[str, Any]]) -> None:
    """Against a model: skipped iff failed < cooldown ago, or probed < lease ago since."""
    clock, cooldown, lease = FakeClock(), 30.0, 15.0
    health = ProviderHealth(clock, probe_lease_s=lease)
    failed_at: dict[str, float] = {}
    probe_at: dict[str, float] = {}
    for action, arg in steps:
        if action == "wait":
            clock.now += arg
        elif action == "fail":
            health.record_failure(arg, "stall")
            failed_at[arg] = clock.now
            probe_at.pop(arg, None)
        elif action == "attempt":
            assert health.record_attempt(arg) == (arg in failed_at)
            if arg in failed_at:
                probe_at[arg] = clock.now
        elif arg in probe_at:  # a probe's success closes the circuit
            health.record_success(arg)
            del failed_at[arg], probe_at[arg]
        else:
            health.record_success(arg)
        skipped = health.cooldowns([OPENAI, GEMINI], cooldown)
        for mode in (OPENAI, GEMINI):
            expected = mode in failed_at and (
                clock.now < failed_at[mode] + cooldown
                or (mode in probe_at and clock.now < probe_at[mode] + lease)
            )
            assert (mode in skipped) == expected, (mode, skipped)


async def test_on_trio_virtual_time_the_cooldown_follows_the_call_clock(
    autojump_clock: trio.abc.Clock,
) -> None:
    health = ProviderHealth(trio.current_time)
    health.record_failure(OPENAI, "http_5xx")
    await trio.sleep(29.5)
    assert health.cooldowns([OPENAI], 30) == pytest.approx({OPENAI: 0.5})
    await trio.sleep(0.5)
    assert health.cooldowns([OPENAI], 30) == {}
    assert trio.current_time() == pytest.approx(30.0)
