"""The shared call table: the admission rule, reservations, and sharing between processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from switchboard.orchestrator.call_table import CallTable

KEY_A = bytes(range(16))
KEY_B = bytes(range(1, 17))


def table(workers: int = 1, capacity: int = 2, local_capacity: int = 1) -> CallTable:
    t = CallTable.in_memory(workers=workers, reservations=workers * capacity)
    for w in range(workers):
        t.set_worker(w, pid=1000 + w, capacity=capacity, local_capacity=local_capacity)
    return t


def test_a_worker_admits_up_to_its_capacity_and_a_finished_call_makes_room() -> None:
    t = table(capacity=2)
    assert t.admit(0, local=False, now=0) is None
    assert t.admit(0, local=False, now=0) is None
    assert t.admit(0, local=False, now=0) == "capacity"
    t.finish(0, local=False)
    assert t.admit(0, local=False, now=0) is None


def test_local_first_calls_have_their_own_lower_limit() -> None:
    t = table(capacity=3, local_capacity=1)
    assert t.admit(0, local=True, now=0) is None
    assert t.admit(0, local=True, now=0) == "local_capacity"
    assert t.admit(0, local=False, now=0) is None  # a relay call still fits
    t.finish(0, local=True)
    assert t.admit(0, local=True, now=0) is None


def test_a_reserved_stream_keeps_its_room_and_is_never_refused() -> None:
    t = table(capacity=2)
    assert t.reserve(KEY_A, local=False, now=0, ttl_s=65) is None
    assert t.admit(0, local=False, now=1) is None  # one room left after the reservation
    assert t.admit(0, local=False, now=1) == "capacity"
    assert t.reserve(KEY_B, local=False, now=1, ttl_s=65) == "capacity"  # a second webhook
    assert t.claim(0, KEY_A, local=False, now=2) is True  # the stream arrives: admitted
    counts = t.counts(now=2)
    assert (counts.active, counts.reserved) == (2, 0)


def test_a_reservation_expires_with_its_token() -> None:
    t = table(capacity=1)
    assert t.reserve(KEY_A, local=True, now=0, ttl_s=65) is None
    assert t.admit(0, local=False, now=64.9) == "capacity"
    assert t.counts(now=65.1).reserved == 0
    assert t.admit(0, local=False, now=65.1) is None
    # A stream that comes after all (its token is checked in PostgreSQL first) still gets in.
    assert t.claim(0, KEY_A, local=True, now=66) is False
    assert t.counts(now=66).active == 2


def test_a_released_reservation_gives_its_room_back() -> None:
    t = table(capacity=1)
    assert t.reserve(KEY_A, local=False, now=0, ttl_s=65) is None
    t.release(KEY_A)
    assert t.admit(0, local=False, now=1) is None


def test_another_workers_reservations_and_calls_count_but_its_capacity_is_its_own() -> None:
    t = table(workers=2, capacity=2)
    assert t.admit(1, local=False, now=0) is None
    assert t.admit(1, local=False, now=0) is None
    assert t.admit(1, local=False, now=0) == "capacity"  # worker 1 is full...
    assert t.admit(0, local=False, now=0) is None  # ...worker 0 is not
    assert t.reserve(KEY_A, local=False, now=0, ttl_s=65) is None  # the last room of 4
    assert t.admit(0, local=False, now=0) == "capacity"  # reserved for the stream
    assert t.claim(1, KEY_A, local=False, now=1)  # lands on the full worker: admitted
    assert t.counts(now=1).per_worker == (1, 3)


def test_a_dead_workers_calls_and_capacity_leave_the_sums() -> None:
    t = table(workers=2, capacity=2)
    t.admit(1, local=False, now=0)
    t.clear_worker(1)
    counts = t.counts(now=0)
    assert (counts.capacity, counts.active) == (2, 0)


def test_two_processes_share_the_table_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "calls"
    t = CallTable.create(path, workers=2, reservations=4)
    t.set_worker(0, pid=1, capacity=2, local_capacity=1)
    t.set_worker(1, pid=2, capacity=2, local_capacity=1)
    assert t.reserve(KEY_A, local=False, now=0, ttl_s=1e9) is None
    other = textwrap.dedent(
        f"""
        from pathlib import Path
        from switchboard.orchestrator.call_table import CallTable
        t = CallTable.attach(Path({str(path)!r}))
        print(t.claim(1, {KEY_A!r}, local=False, now=1.0), t.admit(1, local=False, now=1.0))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", other], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["True", "None"]
    counts = t.counts(now=1)
    assert (counts.active, counts.reserved, counts.per_worker) == (2, 0, (0, 2))
    t.close()


class AdmissionRule(RuleBasedStateMachine):
    """Any sequence of admissions, webhooks, streams, hang-ups and expiries keeps the
    server within its capacity, and a worker over its own only by claimed streams."""

    def __init__(self) -> None:
        super().__init__()
        self.t = table(workers=2, capacity=3, local_capacity=1)
        self.now = 0.0
        self.calls: list[tuple[int, bool]] = []
        self.pending: dict[bytes, tuple[bool, float]] = {}
        self.next_key = 0
        self.over_by_claims = [0, 0]

    @rule(worker=st.integers(0, 1), local=st.booleans())
    def browser_call(self, worker: int, local: bool) -> None:
        if self.t.admit(worker, local=local, now=self.now) is None:
            self.calls.append((worker, local))

    @rule(local=st.booleans())
    def webhook(self, local: bool) -> None:
        self.next_key += 1
        key = self.next_key.to_bytes(16, "little")
        if self.t.reserve(key, local=local, now=self.now, ttl_s=65) is None:
            self.pending[key] = (local, self.now)

    @precondition(lambda self: self.pending)
    @rule(worker=st.integers(0, 1), data=st.data())
    def stream(self, worker: int, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.pending)))
        local, _ = self.pending.pop(key)
        counts = self.t.counts(self.now)
        if counts.per_worker[worker] >= 3:
            self.over_by_claims[worker] += 1
        self.t.claim(worker, key, local=local, now=self.now)
        self.calls.append((worker, local))

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def hang_up(self, data: st.DataObject) -> None:
        worker, local = self.calls.pop(data.draw(st.integers(0, len(self.calls) - 1)))
        self.t.finish(worker, local=local)

    @rule(seconds=st.sampled_from([1.0, 30.0, 70.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        # A token expires in PostgreSQL after 60 s (before its reservation, 65 s): a stream
        # that comes later is refused there and never reaches the table.
        self.pending = {k: v for k, v in self.pending.items() if v[1] + 60 > self.now}

    @invariant()
    def within_capacity(self) -> None:
        counts = self.t.counts(self.now)
        assert counts.active == len(self.calls)
        assert counts.active + counts.reserved <= counts.capacity
        assert counts.local_active + counts.local_reserved <= counts.local_capacity
        for worker in (0, 1):
            assert counts.per_worker[worker] <= 3 + self.over_by_claims[worker]


TestAdmissionRule = AdmissionRule.TestCase
TestAdmissionRule.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
