"""Speech worker processes: recognition and synthesis off the event loop.

PocketSphinx holds the GIL while it decodes, so a decode in a thread of the
runtime's process stops every call's audio for its duration (issue 10
measured gaps up to 979 ms). :class:`SpeechWorkers` runs the jobs of
:mod:`.speech_process` in worker processes instead, and implements
:class:`~.speech.SpeechService` for the local provider.

Why one ``trio_parallel`` worker context per process. Streaming recognition
keeps an utterance's decoder state in one process from its first audio to
its end, but trio-parallel's pool hands each job to whichever worker is
idle. A :func:`trio_parallel.open_worker_context` used by one job at a time
never holds more than one worker, so every job sent through it reaches the
same process while that process lives; that is trio-parallel's own worker
management (spawning, pipes, idle retirement, killing a hung job) with
affinity added, rather than a process pool of our own. Each of the pool's
:attr:`~SpeechWorkers.size` "pinned" workers is such a context with a job
queue and one dispatcher task that runs the queue in order (FIFO, so a
stream's jobs stay in order).

- Assignment: each call's recognition (:class:`WorkerSession`) goes to the
  worker with the fewest calls (then the fewest open streams plus queued
  jobs, then the lowest index), which builds the call's decoder at once,
  while the greeting plays: the caller's words never wait for a model to
  load. Each utterance of the call is decoded there, in one process from
  its first audio to its end. Synthesis goes to the least-loaded worker.
- Lazy: nothing exists until the first request in a Trio run; a worker's
  process is spawned by its first job, so a server whose calls never use
  ``local`` starts none (the greetings and apologies made at start-up come
  from a worker of their own, :func:`one_off_synthesis`, which exits once
  they are made).
- Retirement: a process idle for ``idle_timeout_s`` exits (trio-parallel's
  idle timeout) and gives its memory back; the next job spawns a fresh one.
- Failures: a process that dies (``BrokenWorkerError``) or runs one job
  longer than ``job_timeout_s`` (killed) is replaced by the next job; every
  stream it held fails with :class:`~.speech.SpeechWorkerLost`, which the
  local provider reports as ``ProviderFailed`` so failover works. Other
  workers' streams are untouched.
- Lifetime: the pool's tasks run as a Trio system task of the run that first
  uses it (like trio-parallel's default context), so it needs no nursery of
  its own and is usable from any call; at the end of the run the processes
  are shut down (``grace_period_s``, then killed).

Cancellation: a caller that stops waiting (a call that hangs up) never
cancels a job in a worker, which would kill a process other calls share;
the job finishes and its result is dropped, and an abandoned stream is
closed by a job of its own.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Final, final

import numpy as np
import structlog
import trio
import trio_parallel

from switchboard.codecs import SUPPORTED_RATES, Pcm16

from ..context import AudioFormat
from ..messages import AudioChunk
from . import speech_process
from .speech import Grammar, Recognition, SpeechWorkerLost

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_JOB_TIMEOUT_S",
    "SpeechWorkers",
    "WorkerSession",
    "WorkerStatistics",
    "WorkerStream",
    "one_off_synthesis",
]

log = structlog.get_logger("switchboard.speech_workers")

DEFAULT_IDLE_TIMEOUT_S: Final = 300.0
"""A worker process idle this long exits (its models with it)."""
DEFAULT_JOB_TIMEOUT_S: Final = 20.0
"""A job running this long is taken for a hung worker: the process is killed. The
longest legitimate job is a first job (spawn and model load, about 1 s) or the end
of a long utterance (well under 1 s of races per 10 s of speech)."""
_NO_AUDIO: Final = np.zeros(0, dtype=np.int16)


@final
@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """One pinned worker as the pool sees it.

    Attributes:
        index: its place in the pool.
        sessions: calls whose recognition it serves.
        streams: utterances assigned to it and not finished.
        queued: jobs sent to it and not done (the running one included).
        replaced: how many times its process died or was killed.
    """

    index: int
    sessions: int
    streams: int
    queued: int
    replaced: int


@dataclass(eq=False)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    incarnation: int | None  # the process the job must run in (None: any)
    done: trio.Event = field(default_factory=trio.Event)
    posted_s: float = field(default_factory=trio.current_time)
    ran_in: int | None = None
    value: Any = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Worker:
    index: int
    send: trio.MemorySendChannel[_Job]
    receive: trio.MemoryReceiveChannel[_Job]
    sessions: int = 0
    streams: int = 0
    queued: int = 0
    incarnation: int = 0

    @property
    def load(self) -> int:
        return self.streams + self.queued


class _Pool:
    """The pool's state within one Trio run."""

    def __init__(self, size: int) -> None:
        self.workers: list[_Worker] = []
        for index in range(size):
            send, receive = trio.open_memory_channel[_Job](math.inf)
            self.workers.append(_Worker(index, send, receive))
        self.limiter = trio.CapacityLimiter(size)

    def least_loaded(self) -> _Worker:
        return min(self.workers, key=lambda w: (w.load, w.index))

    def post(self, worker: _Worker, job: _Job) -> _Job:
        """Queue ``job`` on ``worker`` (never waits)."""
        worker.queued += 1
        worker.send.send_nowait(job)
        return job

    async def run(self, worker: _Worker, job: _Job) -> Any:
        """Queue ``job`` and wait for its result (a cancelled wait leaves the job running)."""
        self.post(worker, job)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.value


class SpeechWorkers:
    """A pool of pinned speech worker processes (see the module docstring).

    Args:
        size: worker processes at most (``SPEECH_WORKERS``; default: the number
            of cores).
        idle_timeout_s: an idle process exits after this long.
        job_timeout_s: a job running longer is killed with its process.
        grace_period_s: at the end of the run, how long processes get to exit.

    Raises:
        ValueError: ``size`` below 1 or a negative timeout.
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
        grace_period_s: float = 5.0,
    ) -> None:
        self.size = size if size is not None else (os.cpu_count() or 1)
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")
        if min(idle_timeout_s, job_timeout_s, grace_period_s) < 0:
            raise ValueError("timeouts must not be negative")
        self.idle_timeout_s = idle_timeout_s
        self.job_timeout_s = job_timeout_s
        self.grace_period_s = grace_period_s
        self._state = trio.lowlevel.RunVar[_Pool](f"switchboard.speech_workers.{id(self)}")
        self._stream_ids = count(1)

    # -- SpeechService -----------------------------------------------------------------

    def open_session(self, grammar: Grammar) -> WorkerSession:
        """A call's recognition, on the worker with the fewest calls (then the least load).

        The worker builds the grammar's recognizer and a decoder for the call
        now (spawning its process if needed), before the caller speaks.
        """
        pool = self._pool()
        worker = min(pool.workers, key=lambda w: (w.sessions, w.load, w.index))
        worker.sessions += 1
        reserve = pool.post(worker, _Job(speech_process.reserve, (grammar,), None))
        return WorkerSession(pool, worker, grammar, reserve, self._stream_ids)

    async def synthesize(self, text: str, voice: str, fmt: AudioFormat) -> AudioChunk:
        """eSpeak NG in the least-loaded worker (see :meth:`.speech.SpeechService.synthesize`)."""
        pool = self._pool()
        job = _Job(speech_process.synthesize, (text, voice, fmt.encoding, fmt.sample_rate), None)
        chunk: AudioChunk = await pool.run(pool.least_loaded(), job)
        return chunk

    # -- introspection -----------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the pool has been used in this Trio run."""
        try:
            self._state.get()
        except LookupError:
            return False
        return True

    def statistics(self) -> list[WorkerStatistics]:
        """Each worker's load (empty before the pool's first use in this run)."""
        try:
            pool = self._state.get()
        except LookupError:
            return []
        return [
            WorkerStatistics(w.index, w.sessions, w.streams, w.queued, w.incarnation)
            for w in pool.workers
        ]

    async def process_id(self, index: int) -> int:
        """The pid of worker ``index``'s process (spawned if needed): for tests and tools."""
        pool = self._pool()
        pid: int = await pool.run(pool.workers[index], _Job(speech_process.process_id, (), None))
        return pid

    # -- the pool's tasks --------------------------------------------------------------

    def _pool(self) -> _Pool:
        try:
            return self._state.get()
        except LookupError:
            pool = _Pool(self.size)
            self._state.set(pool)
            trio.lowlevel.spawn_system_task(self._serve, pool, name="speech workers")
            return pool

    async def _serve(self, pool: _Pool) -> None:
        """One worker context per pinned worker, and their dispatchers, until the run ends."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                contexts = [
                    await stack.enter_async_context(
                        trio_parallel.open_worker_context(
                            idle_timeout=self.idle_timeout_s, grace_period=self.grace_period_s
                        )
                    )
                    for _ in pool.workers
                ]
                async with trio.open_nursery() as nursery:
                    for worker, context in zip(pool.workers, contexts, strict=True):
                        nursery.start_soon(self._dispatch, pool, worker, context)
        except trio_parallel.BrokenWorkerError:
            log.warning("a speech worker did not exit in time and was killed")
        except Exception:  # a system task must not raise: that would end the whole run
            log.exception("the speech worker pool failed")
        finally:
            for worker in pool.workers:  # nobody waits for ever on a pool that is gone
                while True:
                    try:
                        job = worker.receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    job.error = SpeechWorkerLost("the speech worker pool stopped")
                    job.done.set()

    async def _dispatch(
        self, pool: _Pool, worker: _Worker, context: trio_parallel.WorkerContext
    ) -> None:
        async for job in worker.receive:
            try:
                if job.incarnation is not None and job.incarnation != worker.incarnation:
                    raise SpeechWorkerLost(
                        f"speech worker {worker.index} was replaced since the stream began"
                    )
                job.ran_in = worker.incarnation
                started_s = trio.current_time()
                with trio.move_on_after(self.job_timeout_s) as timer:
                    job.value = await context.run_sync(
                        job.fn, *job.args, kill_on_cancel=True, limiter=pool.limiter
                    )
                log.debug(
                    "speech job",
                    worker=worker.index,
                    job=job.fn.__name__,
                    queued_ms=round((started_s - job.posted_s) * 1000, 1),
                    ran_ms=round((trio.current_time() - started_s) * 1000, 1),
                    backlog=worker.queued - 1,
                )
                if timer.cancelled_caught:
                    worker.incarnation += 1
                    log.error(
                        "speech worker hung: killed", worker=worker.index, job=job.fn.__name__
                    )
                    raise SpeechWorkerLost(
                        f"speech worker {worker.index} ran {job.fn.__name__} for over "
                        f"{self.job_timeout_s:g} s and was killed"
                    )
            except trio_parallel.BrokenWorkerError as exc:
                worker.incarnation += 1
                log.error("speech worker died", worker=worker.index, job=job.fn.__name__)
                job.error = SpeechWorkerLost(f"speech worker {worker.index} died: {exc!r}")
            except speech_process.StreamGone as exc:
                job.error = SpeechWorkerLost(str(exc))
            except Exception as exc:  # the job's own error (bad text for eSpeak, say)
                job.error = exc
            finally:
                worker.queued -= 1
                job.done.set()


class WorkerSession:
    """One call's recognition in one pinned worker (:meth:`SpeechWorkers.open_session`)."""

    def __init__(
        self, pool: _Pool, worker: _Worker, grammar: Grammar, reserve: _Job, ids: Iterator[int]
    ) -> None:
        self._pool = pool
        self._worker = worker
        self.grammar = grammar
        self._reserve = reserve
        self._ids = ids
        self._closed = False

    @property
    def worker(self) -> int:
        """The index of the worker that serves this call."""
        return self._worker.index

    def open_stream(self, sample_rate: int, *, speech_start_ms: float = 0.0) -> WorkerStream:
        """A stream for one utterance (see :class:`~.speech.RecognitionSession`)."""
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(
                f"unsupported sample rate {sample_rate} Hz (supported: {sorted(SUPPORTED_RATES)})"
            )
        self._worker.streams += 1
        opening = (self.grammar, sample_rate, float(speech_start_ms))
        return WorkerStream(self._pool, self._worker, next(self._ids), opening)

    def close(self) -> None:
        """Release the call's decoder in the worker (never waits; idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._worker.sessions -= 1
        # In the process that took the reservation (a replacement never had it).
        job = _Job(speech_process.release, (), self._reserve.ran_in)
        self._pool.post(self._worker, job)


class WorkerStream:
    """One utterance decoded in one pinned worker (:meth:`WorkerSession.open_stream`).

    Use it from one task at a time: feed, feed, ..., finish.
    """

    def __init__(
        self, pool: _Pool, worker: _Worker, stream_id: int, opening: speech_process.Opening
    ) -> None:
        self._pool = pool
        self._worker = worker
        self.stream_id = stream_id
        self._opening: speech_process.Opening | None = opening
        self._incarnation: int | None = None
        self._closed = False

    @property
    def worker(self) -> int:
        """The index of the worker that serves this stream."""
        return self._worker.index

    async def feed(self, pcm: Pcm16) -> None:
        """Decode ``pcm`` in the stream's worker (see :class:`~.speech.RecognitionStream`)."""
        await self._run(speech_process.feed, pcm)

    async def guess(self, last: Pcm16 | None = None) -> Recognition:
        """Decode ``last`` (if any); the recognition if the utterance ended there."""
        recognition: Recognition = await self._run(
            speech_process.guess, _NO_AUDIO if last is None else last
        )
        return recognition

    async def finish(self, last: Pcm16 | None = None) -> Recognition:
        """Decode ``last`` (if any) and end the utterance; the stream is then closed."""
        try:
            recognition: Recognition = await self._run(
                speech_process.finish, _NO_AUDIO if last is None else last
            )
        finally:
            self._close()
        return recognition

    def abandon(self) -> None:
        """Drop the stream; its worker frees the decoder (never waits)."""
        if self._closed:
            return
        self._close()
        if self._opening is None:  # the worker has (or will have) it
            job = _Job(speech_process.abandon, (self.stream_id,), None)
            self._pool.post(self._worker, job)

    async def _run(self, fn: Callable[..., Any], pcm: Pcm16) -> Any:
        if self._closed:
            raise RuntimeError(f"stream {self.stream_id} is closed")
        opening, self._opening = self._opening, None
        job = _Job(fn, (self.stream_id, pcm, opening), self._incarnation)
        try:
            value = await self._pool.run(self._worker, job)
        except SpeechWorkerLost:
            self._close()
            raise
        if self._incarnation is None:
            self._incarnation = job.ran_in
        return value

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._worker.streams -= 1


class OneOffSynthesis:
    """Synthesis in one worker process of its own (see :func:`one_off_synthesis`)."""

    def __init__(self, context: trio_parallel.WorkerContext) -> None:
        self._context = context

    async def synthesize(self, text: str, voice: str, fmt: AudioFormat) -> AudioChunk:
        """``text`` spoken by eSpeak NG voice ``voice``, as one chunk in ``fmt``.

        Raises:
            ValueError: blank text or an unknown voice.
            SpeechWorkerLost: the worker died while synthesizing.
        """
        try:
            chunk: AudioChunk = await self._context.run_sync(
                speech_process.synthesize, text, voice, fmt.encoding, fmt.sample_rate
            )
        except trio_parallel.BrokenWorkerError as exc:
            raise SpeechWorkerLost(f"the one-off speech worker died: {exc!r}") from exc
        return chunk


@contextlib.asynccontextmanager
async def one_off_synthesis() -> AsyncIterator[OneOffSynthesis]:
    """A worker process for a batch of synthesis, gone when the block ends.

    For what a server makes once at start (greetings, apologies): the process
    exits right after, so a server whose calls never use ``local`` keeps no
    speech worker, and the pool of :class:`SpeechWorkers` starts only when a
    call needs it.
    """
    async with trio_parallel.open_worker_context(idle_timeout=60.0, grace_period=5.0) as context:
        yield OneOffSynthesis(context)
