"""A recorded call's recording, from the call's start to the object store.

When the agent records (``recording.enabled``) and the server keeps recordings
(:class:`Recordings`, ``CallResources.recordings``), the door builds the call's
context with a :class:`~switchboard.actors.tape.RecordingTape` and the consent
decision (:func:`with_recording`), and ``run_call`` runs a :class:`CallRecorder`
beside the event logger:

1. at the start (in the recorder's task; the call does not wait): a fresh data
   key (:func:`.recording_keys.new_data_key`), wrapped by the tenant's RSA public
   key when the tenant has one (:func:`.recording_rows.tenant_public_key`), else
   by the server keyring; the ``recordings`` row (status ``recording``); the
   staging file ``DATA_DIR/recordings/staging/<session>.sbrec``, locked while
   the call runs, with the file's header;
2. every :attr:`Recordings.segment_interval_s` (1 s): the records the transports
   put on the tape since the last time, sealed into one authenticated segment
   (AES-256-GCM, :class:`~switchboard.codecs.recording_format.SegmentWriter`) and
   appended. The audio path only appends to a list; sealing and writing run in
   this task (in a thread when a batch is large, :data:`INLINE_SEAL_BYTES`);
3. at the end: the last segment, the upload (``RecordingStore.put_file``, in a
   thread), :func:`.recording_rows.finish_recording` (``complete``), and the
   staging file is removed.

A failure at any step never ends or disturbs the call: it is an ``error``
event (``where="recording"``, ``step`` says which) and a log line, and the
tape is emptied from then on. A crash leaves the staging file: the next start
uploads it as ``truncated`` (:func:`recover_recordings`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, Literal
from uuid import UUID

import structlog
import trio

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.tape import RecordingTape
from switchboard.codecs.recording_format import (
    Record,
    RecordingCorrupt,
    RecordingHeader,
    SegmentWriter,
    TrackFormat,
    WrappedKey,
    read_header,
    read_records,
)

from .recording_keys import Keyring, new_data_key, wrap_rsa
from .recording_rows import (
    NewRecording,
    create_recording,
    finish_recording,
    get_recording,
    tenant_public_key,
)
from .recording_store import RecordingStore, object_key, open_store
from .store import Store

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "INLINE_SEAL_BYTES",
    "CallRecorder",
    "Recordings",
    "open_recordings",
    "recover_recordings",
    "staging_path",
    "with_recording",
]

log = structlog.get_logger("switchboard.recording")

STAGING_SUFFIX: Final = ".sbrec"
INLINE_SEAL_BYTES: Final = 64 * 1024
"""A batch with more audio than this is sealed and written in a thread. Measured: a
second of a phone call (both tracks, 100 x 160 bytes) seals in about 25 us; a second of
48 kHz PCM16 (192 kB) takes about 60 us to seal and 75 us to write, past the ~100 us a
task may hold the event loop."""
FINISH_TIMEOUT_S: Final = 30.0
"""The longest the end of a call waits for the last segment, the upload and the row;
past it the staging file is left for :func:`recover_recordings`."""


@dataclass
class Recordings:
    """Where a server keeps its calls' recordings (``CallResources.recordings``).

    Attributes:
        keyring: wraps data keys when the tenant has no RSA public key.
        store: the object store the finished files go to.
        data_dir: the server's data folder (staging files under ``recordings/staging``).
        segment_interval_s: how often the tape is sealed into a segment.
    """

    keyring: Keyring
    store: RecordingStore
    data_dir: Path
    segment_interval_s: float = 1.0

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "recordings" / "staging"


def open_recordings(settings: Settings) -> Recordings:
    """The server's recordings: its keyring (``RECORDING_KEYS``, else the data folder's
    key file), its store (``RECORDING_STORE``, else ``DATA_DIR/recordings``).

    Raises:
        ConfigError: a setting is malformed.
    """
    return Recordings(
        keyring=settings.recording_keyring(),
        store=open_store(settings),
        data_dir=settings.data_dir,
    )


def staging_path(data_dir: Path, ctx: CallContext) -> Path:
    """``data_dir/recordings/staging/<session>.sbrec``: the file a running call appends to."""
    return data_dir / "recordings" / "staging" / f"{ctx.session_id}{STAGING_SUFFIX}"


def with_recording(
    ctx: CallContext, recordings: Recordings | None, *, caller_state: str | None = None
) -> CallContext:
    """``ctx`` with a recording tape and the consent decision when the agent records and
    the server keeps recordings; else ``ctx`` unchanged (no tape: no audio is kept).

    ``caller_state``: the caller's state code (Twilio's ``FromState``), None when unknown.
    """
    policy = ctx.agent.recording
    if recordings is None or not policy.enabled:
        return ctx
    return replace(ctx, tape=RecordingTape(ctx.now_ms), consent=policy.consent(caller_state))


class CallRecorder:
    """The writer of one call's recording (see the module docstring).

    ``run`` is started in ``run_call``'s outer nursery and returns once the recording
    is stored (or has failed); ``finish`` tells it the call is over and waits for it.
    """

    def __init__(
        self, ctx: CallContext, recordings: Recordings, store: Store, events: EventSink
    ) -> None:
        if not isinstance(ctx.tape, RecordingTape):
            raise TypeError("a CallRecorder needs a call with a RecordingTape")
        self.ctx = ctx
        self._tape = ctx.tape
        self._rec = recordings
        self._store = store
        self._events = events
        self.path = staging_path(recordings.data_dir, ctx)
        self._file: BinaryIO | None = None
        self._writer: SegmentWriter | None = None
        self._failed = False
        self._over = trio.Event()
        self._ended_ms = 0.0
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self.ready = trio.Event()
        """Set once the start step is over: the staging file is open, or recording failed."""
        self.size_bytes = 0
        self.status: str | None = None
        """``complete`` once stored; ``failed`` after a failure; None while running."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # the call starts at once; the tape holds what comes meanwhile
        try:
            with self._scope:
                await self._steps()
        finally:
            self._close_file()
            with trio.CancelScope(shield=True):
                await self._events.aclose()
            self._done.set()

    async def _steps(self) -> None:
        await self._guard("start", self._open)
        self.ready.set()
        while not self._over.is_set():
            with trio.move_on_after(self._rec.segment_interval_s):
                await self._over.wait()
            await self._guard("write", partial(self._flush, last=False))
        await self._guard("write", partial(self._flush, last=True))
        await self._guard("upload", self._upload)

    async def finish(self, timeout_s: float = FINISH_TIMEOUT_S) -> None:
        """The call is over: seal the rest, store the file, wait until done (at most
        ``timeout_s``; then the recorder is stopped and its staging file left behind)."""
        if not self._over.is_set():
            self._ended_ms = self.ctx.now_ms()
            self._over.set()
        with trio.move_on_after(timeout_s):
            await self._done.wait()
            return
        log.error("recording not stored in time; its staging file is left", timeout_s=timeout_s)
        self._scope.cancel()
        await self._done.wait()

    # -- steps -----------------------------------------------------------------

    async def _guard(self, step: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` unless an earlier step failed; a failure is an event, not a crash."""
        if self._failed:
            self._tape.take()  # the call goes on unrecorded: drop what it kept
            return
        try:
            await work()
        except Exception as exc:
            self._failed = True
            self.status = "failed"
            self._tape.take()
            log.error("recording failed; the call goes on", step=step, error=repr(exc))
            with trio.CancelScope(shield=True):
                await self._events.emit(
                    "error",
                    where="recording",
                    step=step,
                    exception=type(exc).__name__,
                    detail=str(exc)[:500],
                )

    async def _open(self) -> None:
        ctx = self.ctx
        data_key = new_data_key()
        public_pem = await trio.to_thread.run_sync(tenant_public_key, self._store, ctx.tenant_id)
        kind: Literal["keyring", "rsa"]
        if public_pem is not None:
            kind = "rsa"
            kid, wrapped = wrap_rsa(public_pem, data_key)
        else:
            kind = "keyring"
            kid, wrapped = self._rec.keyring.wrap(data_key)
        started_at = datetime.now(UTC) - timedelta(milliseconds=ctx.now_ms())
        fmt = ctx.caller_format  # both tracks are in the caller's wire format
        track = TrackFormat(encoding=fmt.encoding, sample_rate=fmt.sample_rate)
        header = RecordingHeader(
            session_id=str(ctx.session_id),
            tenant_id=str(ctx.tenant_id),
            caller=track,
            agent=track,
            started_at=started_at.isoformat(),
            key=WrappedKey(kind=kind, kid=kid, wrapped=wrapped if kind == "rsa" else None),
        )
        self._writer = SegmentWriter(data_key, header)
        new = NewRecording(
            tenant_id=ctx.tenant_id,
            session_id=ctx.session_id,
            object_key=object_key(ctx.tenant_id, ctx.session_id),
            key_kind=kind,
            kid=kid,
            wrapped_key=wrapped,
            caller_encoding=fmt.encoding,
            caller_sample_rate=fmt.sample_rate,
            agent_encoding=fmt.encoding,
            agent_sample_rate=fmt.sample_rate,
            retention_days=ctx.agent.recording.retention_days,
        )
        await trio.to_thread.run_sync(create_recording, self._store, new)
        await trio.to_thread.run_sync(self._create_file, self._writer.start())

    def _create_file(self, head: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        file = os.fdopen(fd, "wb", buffering=0)
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)  # a live call's: recovery leaves it alone
        self._file = file
        self._write(head)

    def _write(self, blob: bytes) -> None:
        assert self._file is not None
        self._file.write(blob)
        self.size_bytes += len(blob)

    def _seal_and_write(self, records: Sequence[Record], last: bool) -> None:
        assert self._writer is not None
        self._write(self._writer.seal(records, last=last))

    async def _flush(self, *, last: bool) -> None:
        records = self._tape.take()
        if self._writer is None or self._file is None or (not records and not last):
            return
        if sum(len(r.data) for r in records) > INLINE_SEAL_BYTES:
            await trio.to_thread.run_sync(self._seal_and_write, records, last)
        else:
            self._seal_and_write(records, last)

    async def _upload(self) -> None:
        if self._file is None:
            return
        ctx = self.ctx
        await trio.to_thread.run_sync(os.fsync, self._file.fileno())
        await trio.to_thread.run_sync(
            self._rec.store.put_file,
            object_key(ctx.tenant_id, ctx.session_id),
            self.path,
            abandon_on_cancel=True,  # past FINISH_TIMEOUT_S: the file stays for recovery
        )
        row = await trio.to_thread.run_sync(
            lambda: finish_recording(
                self._store,
                ctx.tenant_id,
                ctx.session_id,
                status="complete",
                size_bytes=self.size_bytes,
                duration_ms=round(self._ended_ms),
            )
        )
        if row is None:  # deleted while the call ran: the object must not outlive its row
            await trio.to_thread.run_sync(
                self._rec.store.delete, object_key(ctx.tenant_id, ctx.session_id)
            )
        self.path.unlink(missing_ok=True)
        self.status = "complete" if row is not None else "deleted"
        log.info("recording stored", size_bytes=self.size_bytes, status=self.status)

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()  # releases the lock: a file left now is recovery's
            self._file = None


def recover_recordings(store: Store, recordings: Recordings) -> int:
    """Upload the staging files a crash left (no live call holds them) as ``truncated``;
    return how many (sync, blocking: run it in a thread before the server takes calls).

    The duration is the last record's time when the server can read the file (keyring
    mode), else 0. A file whose header cannot be read (the process died before it was
    written) is removed; one that cannot be uploaded or recorded stays for the next start.
    """
    folder = recordings.staging_dir
    if not folder.is_dir():
        return 0
    recovered = 0
    for path in sorted(folder.glob(f"*{STAGING_SUFFIX}")):
        with contextlib.ExitStack() as stack:
            try:
                file = stack.enter_context(path.open("rb"))
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live call's
            except OSError as exc:
                log.error("staging file unreadable", path=str(path), error=repr(exc))
                continue
            blob = file.read()
            try:
                header = read_header(blob)
                tenant_id, session_id = UUID(header.tenant_id), UUID(header.session_id)
            except (RecordingCorrupt, ValueError) as exc:
                log.warning("staging file without a header removed", path=str(path), error=str(exc))
                path.unlink(missing_ok=True)
                continue
            try:
                recordings.store.put_file(object_key(tenant_id, session_id), path)
                finish_recording(
                    store,
                    tenant_id,
                    session_id,
                    status="truncated",
                    size_bytes=len(blob),
                    duration_ms=_readable_duration_ms(store, recordings.keyring, header, blob),
                )
            except Exception as exc:
                log.error("staging file not recovered yet", path=str(path), error=repr(exc))
                continue
            path.unlink(missing_ok=True)
            recovered += 1
            log.warning("truncated recording recovered", session_id=str(session_id))
    return recovered


def _readable_duration_ms(
    store: Store, keyring: Keyring, header: RecordingHeader, blob: bytes
) -> int:
    """The last record's time (ms) of a keyring-mode file, else 0 (the server cannot read
    an RSA-mode file; an unreadable one is still kept, as found)."""
    if header.key.kind != "keyring":
        return 0
    try:
        row = get_recording(store, UUID(header.tenant_id), UUID(header.session_id))
        if row is None or row.wrapped_key is None:
            return 0
        data_key = keyring.unwrap(row.kid, row.wrapped_key)
        _, records = read_records(blob, data_key, allow_truncated=True)
    except Exception as exc:  # a damaged file is uploaded as it is; its length is unknown
        log.warning("truncated recording unreadable", error=repr(exc))
        return 0
    return round(records[-1].t_ms) if records else 0
