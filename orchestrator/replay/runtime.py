"""How a replay's Trio run is set up: virtual time, a reproducible scheduler, the garbage
collector out of the way, and the replayed call's own log lines kept quiet."""

from __future__ import annotations

import gc
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
import trio
import trio.testing

__all__ = ["REPLAY_SEED", "deterministic_scheduling", "gc_frozen", "quiet_logs", "replay_clock"]

log = structlog.get_logger("switchboard.replay")


def replay_clock() -> trio.testing.MockClock:
    """Trio's ``MockClock`` jumping to the next deadline whenever every task waits
    (``autojump_threshold=0``), read without the real clock.

    At ``rate`` 0 (the default, never changed here) the virtual time moves only when the
    clock jumps, so reading it is reading its base; ``MockClock`` is final, so the one
    method is replaced on the instance. A replay reads the clock a few hundred thousand
    times per minute of call: this saves a tenth of its wall time.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    clock.current_time = lambda: clock._virtual_base  # type: ignore[method-assign]
    return clock


REPLAY_SEED = 0x5EED
"""The seed of Trio's scheduler for every replay (see :func:`deterministic_scheduling`)."""


@contextmanager
def deterministic_scheduling() -> Iterator[None]:
    """Trio runs the tasks woken at one instant in an order it keeps random on purpose (it
    reverses each batch with probability 1/2; deadlines that tie expire in the order of
    their scopes' addresses), so that code cannot lean on an order it never promised. A
    replay must be reproducible, so while it runs Trio's scheduler is put in the mode its
    own Hypothesis plugin uses for reproducible tests: each batch sorted by task creation,
    then shuffled by its random source seeded with :data:`REPLAY_SEED`; both are given
    back as they were. Trio keeps these two private (``trio._core._run``); if a release
    moves them, replays still run, and two replays may order the events of one instant
    differently (a warning says so)."""
    run = getattr(getattr(trio, "_core", None), "_run", None)
    source = getattr(run, "_r", None)
    flag = "_ALLOW_DETERMINISTIC_SCHEDULING"
    if not isinstance(source, random.Random) or not isinstance(getattr(run, flag, None), bool):
        log.warning("trio's scheduler cannot be made deterministic: ties may differ")
        yield
        return
    state, allowed = source.getstate(), getattr(run, flag)
    source.seed(REPLAY_SEED)
    setattr(run, flag, True)
    try:
        yield
    finally:
        setattr(run, flag, allowed)
        source.setstate(state)


@contextmanager
def gc_frozen() -> Iterator[None]:
    """The trace in memory (tens of thousands of records for a long call) is moved out of
    the garbage collector's sight while the replay runs: otherwise each collection walks
    all of it again, and a long call's replay slows down by a quarter."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def quiet_logs() -> Iterator[None]:
    """The replayed call's own log lines (warnings of the call as it runs again) are not
    the replay's output: only errors pass while it runs."""
    root = logging.getLogger()
    level = root.level
    structlog_config = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        structlog.configure(**structlog_config)
