"""Speech worker processes (real ones): decoding never stops the event loop, a dead
worker fails its stream clearly and is replaced, and PocketSphinx stays out of the
server's process.

Real clock (the work happens in other processes); nothing asserts a duration:
the event loop's liveness is counted against the decode's own length.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

from switchboard.actors.local.speech import Grammar, SpeechWorkerLost
from switchboard.actors.local.wavfile import read_wav
from switchboard.actors.local.workers import SpeechWorkers
from switchboard.codecs import Resampler, ulaw_decode, ulaw_encode

RECORDING = Path(__file__).parent / "data" / "speech" / "recorded" / "librivox-0880.wav"
GRAMMAR = Grammar.of({"hours": ["what are your opening hours", "when are you open"]})
TICK_S = 0.01


def phone_audio() -> np.ndarray:
    """3 s of real speech as a phone call delivers it (8 kHz, through G.711)."""
    rate, pcm = read_wav(RECORDING)
    rs = Resampler(rate, 8000)
    return ulaw_decode(ulaw_encode(np.concatenate([rs.process(pcm), rs.flush()])))


async def test_the_event_loop_keeps_running_while_a_worker_decodes() -> None:
    """A whole utterance decoded at its end (the longest single job there is) runs
    beside the loop: a 10 ms ticker in this process keeps ticking through it. (With
    the decode in a thread of this process, PocketSphinx held the GIL for the whole
    job and the ticker stood still.)"""
    pcm = phone_audio()
    workers = SpeechWorkers(1)
    session = workers.open_session(GRAMMAR)
    warm = session.open_stream(8000)
    await warm.feed(np.zeros(800, np.int16))  # the process is up and its models are loaded
    warm.abandon()

    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await trio.sleep(TICK_S)
            ticks.append(trio.current_time())

    stream = session.open_stream(8000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        started = trio.current_time()
        recognition = await stream.finish(pcm)  # fed whole: decoded in one job
        ended = trio.current_time()
        nursery.cancel_scope.cancel()
    session.close()
    assert recognition.transcript  # it did decode the speech
    during = [t for t in ticks if started <= t <= ended]
    # The loop ran at least every 50 ms on average, however fast the machine decodes.
    assert len(during) >= max(3, 0.2 * (ended - started) / TICK_S)


async def test_a_worker_killed_mid_utterance_fails_the_stream_and_the_next_one_works() -> None:
    pcm = phone_audio()
    workers = SpeechWorkers(1)
    session = workers.open_session(GRAMMAR)
    stream = session.open_stream(8000)
    await stream.feed(pcm[:8000])
    os.kill(await workers.process_id(0), signal.SIGKILL)
    with pytest.raises(SpeechWorkerLost):
        await stream.finish(pcm[8000:])
    stream.abandon()
    # A later utterance gets a fresh process: the call (or the next one) goes on.
    again = session.open_stream(8000)
    recognition = await again.finish(pcm)
    session.close()
    assert recognition.transcript


def test_a_server_start_loads_no_pocketsphinx_and_keeps_no_speech_worker() -> None:
    """What a server does at start (greeting and apology made in a one-off worker) leaves
    its process without PocketSphinx and without a speech worker: a server whose calls
    never use ``local`` recognition never starts one."""
    script = """
import multiprocessing, sys, trio
from switchboard.actors.context import PHONE_AUDIO
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.local.workers import one_off_synthesis
from switchboard.orchestrator.agent_file import parse_agent_yaml

async def main():
    agent = parse_agent_yaml(open(sys.argv[1]).read(), sys.argv[1])
    registry = AssetRegistry()
    assets = registry.get(agent)
    async with one_off_synthesis() as speech:
        await assets.prepare(PHONE_AUDIO, speech)
    assert assets.prepared_apology(PHONE_AUDIO) is not None
    children = len(multiprocessing.active_children())
    print("pocketsphinx" in sys.modules, registry.speech.started, children)

trio.run(main)
"""
    agent = Path(__file__).parent.parent / "examples" / "receptionist.yaml"
    done = subprocess.run(
        [sys.executable, "-c", script, str(agent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False False 0"
