"""Two instances, one database, a real balancer: the fleet of ``deploy/`` on loopback.

One fleet, three acts in order (one fleet costs most of the test's time).

Debian's PostgreSQL with the schema applied once by ``switchboard db migrate``; two
``switchboard serve --workers 2`` instances; Debian's HAProxy in front with
``deploy/haproxy.cfg`` (no sticky sessions). A caller reaches only the balancer:

* calls complete on both instances, a Twilio webhook answered by one instance while
  the balancer sends its stream to the other among them, and a browser call whose
  token one instance made and the other checked;
* SIGKILL of instance b (its workers too): a's call goes on and is answered; new
  calls land on a; started again, b closes its lost sessions as "server lost" with
  every event its journals held, and the balancer sends it calls again;
* SIGTERM to instance a with calls on it: its calls go on to their end, new calls all
  connect (a is unready first, ``DRAIN_GRACE_S``, so the balancer moves them before a
  would refuse one) and land on b, and a exits 0 once its callers hung up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from fault_support import (
    TwilioCall,
    assert_complete,
    browser_call,
    call_log,
    poll,
    realtime_call,
    twilio_call,
)
from fleet_support import BACKEND_HEADER, Fleet, debian_postgres, fleet, migrate, new_database

from switchboard.actors.local.tts import synthesize_ulaw
from switchboard.orchestrator.spool import SERVER_LOST

GRACE_S = 8.0
"""``DRAIN_GRACE_S``: far above the balancer's 2 s to take an unready instance out."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with debian_postgres() as url:
        yield url


@pytest.fixture
def fleet_database(cluster: str) -> str:
    url = new_database(cluster)
    assert "0001" in migrate(url)  # the Job's command, once for the fleet
    return url


async def connected(call: TwilioCall) -> None:
    """Until the caller hears the agent's first audio (the call was not refused)."""
    assert await call.phone.wait_for(lambda: call.frames_heard > 0, 30.0), "no agent audio"


async def answered(call: TwilioCall, question: bytes) -> bool:
    """Once the agent is silent (the greeting and any answer played to their end), say
    ``question``: whether an answer began."""
    await call.wait_greeting()
    while call.phone.playout_end_s + 0.2 > trio.current_time():
        await trio.sleep_until(call.phone.playout_end_s + 0.2)
    return await call.ask(question, whole=False) is not None


def backend(call: TwilioCall) -> tuple[str, str]:
    """Which instance answered the webhook, which one runs the stream."""
    return call.webhook_headers[BACKEND_HEADER], call.stream_headers[BACKEND_HEADER]


async def hold_calls(deployed: Fleet, calls: AsyncExitStack, on: set[str]) -> list[TwilioCall]:
    """Twilio calls through the balancer, held open, until streams run on each of ``on``
    and one call's webhook and stream were on different instances (8 calls at most)."""
    held: list[TwilioCall] = []
    for _ in range(8):
        call = await calls.enter_async_context(twilio_call(deployed.front))
        await connected(call)
        held.append(call)
        streams = {backend(c)[1] for c in held}
        if streams >= on and any(len(set(backend(c))) == 2 for c in held):
            return held
    raise AssertionError(f"the balancer spread 8 calls as {[backend(c) for c in held]}")


async def test_a_fleet_of_two_behind_haproxy(fleet_database: str, tmp_path: Path) -> None:
    question = synthesize_ulaw("what are your opening hours")
    async with fleet(tmp_path, fleet_database, grace_s=GRACE_S) as deployed:
        front = deployed.front
        await calls_complete_on_both_instances(deployed, question)
        lost = await sigkill_leaves_the_other_instance_alone(deployed, question)
        await deployed.backends_up({"a", "b"})  # b is back behind the balancer
        held = await sigterm_refuses_no_call(deployed, question)
        for session_id in lost:
            assert call_log(front, session_id) == SERVER_LOST
            types = [t for _, t in assert_complete(front, session_id)]
            assert types[0] == "session.start" and types[-1] == "session.end"
        for call in held:  # whole, and ended by their callers or their agent's timeout
            ended = await poll(lambda s=call.session_id: call_log(front, s), "ended")
            assert ended != SERVER_LOST
            assert_complete(front, call.session_id)
        for instance in deployed.instances.values():
            instance.assert_no_traceback()


async def calls_complete_on_both_instances(deployed: Fleet, question: bytes) -> None:
    front = deployed.front
    async with AsyncExitStack() as calls:
        held = await hold_calls(deployed, calls, {"a", "b"})
        crossed = next(c for c in held if len(set(backend(c))) == 2)
        assert await answered(crossed, question), "no answer on a crossed call"
        async with browser_call(front) as browser:  # token by one, call on either
            await browser.wait_for(lambda m: m["event"] == "transcript")
        async with realtime_call(front) as realtime:
            await realtime.wait_for(lambda m: m["type"] == "response.done")
    sessions = [c.session_id for c in held] + [browser.session_id, realtime.session_id]
    for session_id in sessions:
        await poll(lambda s=session_id: call_log(front, s), f"{session_id} ended")
        assert_complete(front, session_id)
    owners = front.rows(
        "select count(distinct owner) from voice_sessions where id = any(%s::uuid[])", sessions
    )
    assert owners == [(2,)]


async def sigkill_leaves_the_other_instance_alone(deployed: Fleet, question: bytes) -> list[str]:
    """SIGKILL b with calls on both; the sessions b lost."""
    lost, front = deployed.instances["b"], deployed.front
    async with AsyncExitStack() as calls:
        held = await hold_calls(deployed, calls, {"a", "b"})
        on_b = [c.session_id for c in held if backend(c)[1] == "b"]
        on_a = [c for c in held if backend(c)[1] == "a"]
        lost.kill_all()
        assert await lost.wait() == -9
        await deployed.backends_up({"a"})
        assert await answered(on_a[0], question), "the survivor's call was disturbed"
        async with twilio_call(front) as new:
            await connected(new)
            assert backend(new)[1] == "a"
    for call in on_a:
        ended = await poll(lambda s=call.session_id: call_log(front, s), "ended")
        assert ended != SERVER_LOST
    assert call_log(front, on_a[0].session_id) == "caller hung up"
    await lost.start()  # same data folder and port: the same instance, back
    for session_id in on_b:
        await poll(lambda s=session_id: call_log(front, s), f"{session_id} recovered")
    return on_b


async def sigterm_refuses_no_call(deployed: Fleet, question: bytes) -> list[TwilioCall]:
    """SIGTERM a with calls on both; the calls held meanwhile."""
    leaving = deployed.instances["a"]
    async with AsyncExitStack() as calls:
        held = await hold_calls(deployed, calls, {"a", "b"})
        on_a = [c for c in held if backend(c)[1] == "a"]
        leaving.terminate()
        await leaving.ready_when(503)
        assert await answered(on_a[0], question), "no answer while leaving"
        # New calls while it leaves: every one connects (twilio_call fails on a
        # refusal), until the balancer has sent two in a row wholly to b.
        placed: list[tuple[str, str]] = []
        with trio.fail_after(60):
            while placed[-2:] != [("b", "b"), ("b", "b")]:
                async with twilio_call(deployed.front) as new:
                    await connected(new)
                    placed.append(backend(new))
        # The calls on the leaving instance went on all along.
        assert leaving.process is not None and leaving.process.returncode is None
        assert await answered(on_a[0], question), "no answer while draining"
    assert await leaving.wait() == 0  # its callers hung up: drained, then stopped
    assert call_log(deployed.front, on_a[0].session_id) == "caller hung up"
    return held
