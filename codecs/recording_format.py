"""The recording file: what a call's tape holds, sealed in authenticated segments.

This module is shared ground. Its first part (:class:`Kind`, :class:`Record`,
the provider-event packing) fixes what a recording *contains*; the sealed
file format (envelope header, AES-256-GCM segments) follows below it.

A recording is a sequence of :class:`Record` in the order they happened:
each one a kind, a time on the call's clock (milliseconds since the call
started, ``CallContext.now_ms``) and its bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Annotated, Final, Literal

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class Kind(IntEnum):
    """What a record holds."""

    CALLER_AUDIO = 1
    """Caller audio as received, in the call's caller format (its wire encoding)."""
    AGENT_AUDIO = 2
    """Agent audio as sent to the caller, in the call's caller format."""
    AGENT_CLEARED = 3
    """Barge-in: the caller's player dropped what it had not played yet (Twilio ``clear``).
    No bytes: agent audio laid out at or after ``t_ms`` was sent but never heard."""
    PROVIDER_EVENT = 4
    """One message a provider instance sent, as it arrived (:func:`pack_provider_event`)."""
    PROVIDER_OUTPUT = 5
    """What a provider instance told the call and was told, as the supervisor saw it: its
    start, each message and each event it logged, each message it was sent besides audio
    (the replay's recorded provider plays these back). Framed like
    :data:`PROVIDER_EVENT` (:func:`pack_provider_event`, binary body); the body is the
    actors' business (``switchboard.actors.instance_record``)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One entry of a call's tape: ``kind``, ``t_ms`` on the call's clock, ``data``."""

    kind: Kind
    t_ms: float
    data: bytes


_SOURCE = struct.Struct("<BB")  # source length, 1 if the message was text


def pack_provider_event(source: str, raw: str | bytes) -> bytes:
    """``source`` (the provider instance, e.g. ``"openai_realtime#1"``, at most 255 UTF-8
    bytes) and the message as it arrived (text frames as UTF-8) in one record's bytes."""
    name = source.encode()[:255]
    is_text = isinstance(raw, str)
    body = raw.encode() if isinstance(raw, str) else raw
    return _SOURCE.pack(len(name), 1 if is_text else 0) + name + body


def unpack_provider_event(data: bytes) -> tuple[str, str | bytes]:
    """The inverse of :func:`pack_provider_event`: ``(source, raw)``.

    Raises:
        ValueError: ``data`` is shorter than the lengths it declares.
    """
    if len(data) < _SOURCE.size:
        raise ValueError("provider event record shorter than its header")
    size, is_text = _SOURCE.unpack_from(data)
    end = _SOURCE.size + size
    if len(data) < end:
        raise ValueError("provider event record shorter than its source name")
    source = data[_SOURCE.size : end].decode()
    body = data[end:]
    return source, (body.decode() if is_text else body)


# --- The sealed file ----------------------------------------------------------------------
#
# File = MAGIC (8 bytes) | version (u16 BE) | header length (u32 BE) | header JSON
#        | segment* ; segment = length word (u32 BE) | AES-256-GCM ciphertext and tag.
#
# STREAM (Hoang, Reyhanitabar, Rogaway, Vizar, "Online Authenticated-Encryption and its
# Nonce-Reuse Misuse-Resistance", CRYPTO 2015), laid out as in Tink's streaming AEAD and
# age: a 96-bit nonce = 7-byte random prefix (in the header) | u32 BE segment counter |
# last-segment flag byte (1 on the final segment, else 0). Every segment has the header
# bytes (magic through JSON, as they are in the file) as associated data. So a segment
# moved, dropped, altered, taken from another recording or cut off fails authentication,
# and a file whose final segment is not flagged last is known to be truncated.
#
# The length word's top bit repeats the last flag, so the reader knows which nonce to try;
# it is a hint only: a wrong hint is a wrong nonce, which fails authentication.

FORMAT_VERSION = 1
"""The sealed file format this build writes and reads."""

MAGIC = b"\x93SBREC\r\n"
"""The file's first 8 bytes (non-ASCII first byte and CR LF, as PNG's signature does,
so a text-mode transfer that mangles line ends is caught as 'not a recording')."""

MAX_SEGMENT_BYTES = 1 << 20
"""Plaintext bytes in one segment at most (1 MiB); a larger flush is split."""

NONCE_PREFIX_BYTES = 7
DATA_KEY_BYTES = 32
_TAG_BYTES = 16
_MAX_HEADER_BYTES = 64 * 1024
_MAX_COUNTER = 0xFFFFFFFF
_LAST_BIT = 0x8000_0000
_PREAMBLE = struct.Struct(">HI")  # version, header length (after MAGIC)
_LENGTH = struct.Struct(">I")  # segment length word
_RECORD = struct.Struct(">BdI")  # kind, t_ms, data length


class RecordingCorrupt(ValueError):  # noqa: N818 - the interface name, a state like StreamGone
    """The bytes are not a readable recording: not one at all, an unsupported version,
    truncated, or altered (or opened with the wrong key). The message says which."""


class TrackFormat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One track's wire format: ``encoding`` (``"pcmu"``: G.711 mu-law, or ``"pcm16"``:
    little-endian PCM16) at ``sample_rate`` Hz."""

    encoding: Literal["pcmu", "pcm16"]
    sample_rate: Annotated[int, msgspec.Meta(gt=0, le=384_000)]


class WrappedKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who can open the recording's data key.

    ``kind`` ``"keyring"``: the server's keyring key ``kid`` wrapped it (the wrapped key is
    in the database row, so ``wrapped`` is None here). ``kind`` ``"rsa"``: a tenant's RSA
    public key (``kid`` = ``"rsa:"`` + fingerprint) wrapped it, and ``wrapped`` (base64 in
    JSON) travels in the header so the private key's holder needs nothing else.
    """

    kind: Literal["keyring", "rsa"]
    kid: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    wrapped: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind == "rsa" and not self.wrapped:
            raise ValueError("an RSA-wrapped key must carry its wrapped bytes")
        if self.kind == "keyring" and self.wrapped is not None:
            raise ValueError("a keyring-wrapped key lives in the database row, not the file")


def _new_nonce_prefix() -> bytes:
    return os.urandom(NONCE_PREFIX_BYTES)


class RecordingHeader(msgspec.Struct, frozen=True, kw_only=True):
    """The file's plaintext header (JSON), authenticated with every segment.

    ``session_id``/``tenant_id`` as text (UUIDs); ``caller`` and ``agent`` the two
    tracks' formats; ``started_at`` an ISO-8601 time with its offset; ``key`` how the
    data key is wrapped; ``nonce_prefix`` 7 random bytes (made for you: never reuse a
    header with the same data key). Unknown JSON fields are ignored (same version).
    """

    session_id: str
    tenant_id: str
    caller: TrackFormat
    agent: TrackFormat
    started_at: str
    key: WrappedKey
    version: int = FORMAT_VERSION
    nonce_prefix: Annotated[
        bytes, msgspec.Meta(min_length=NONCE_PREFIX_BYTES, max_length=NONCE_PREFIX_BYTES)
    ] = msgspec.field(default_factory=_new_nonce_prefix)

    def __post_init__(self) -> None:
        try:
            stamp = datetime.fromisoformat(self.started_at)
        except ValueError:
            raise ValueError(f"started_at is not an ISO-8601 time: {self.started_at!r}") from None
        if stamp.tzinfo is None:
            raise ValueError(f"started_at needs a UTC offset: {self.started_at!r}")
        if len(self.nonce_prefix) != NONCE_PREFIX_BYTES:
            raise ValueError(f"nonce_prefix must be {NONCE_PREFIX_BYTES} bytes")


_HEADER_DECODER: Final = msgspec.json.Decoder(RecordingHeader)


def _check_data_key(data_key: bytes) -> AESGCM:
    if not isinstance(data_key, (bytes, bytearray)) or len(data_key) != DATA_KEY_BYTES:
        raise ValueError(f"the data key must be {DATA_KEY_BYTES} bytes (AES-256)")
    return AESGCM(bytes(data_key))


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def pack_records(records: Sequence[Record]) -> bytes:
    """Records as one byte string: per record kind (u8), ``t_ms`` (float64), data length
    (u32) big-endian, then the data. The plaintext of a writer flush."""
    parts: list[bytes] = []
    head = _RECORD.pack
    for record in records:
        parts.append(head(record.kind, record.t_ms, len(record.data)))
        parts.append(record.data)
    return b"".join(parts)


def _unpack_records(plain: bytes, *, partial_ok: bool) -> list[Record]:
    records: list[Record] = []
    pos, end, size = 0, len(plain), _RECORD.size
    unpack = _RECORD.unpack_from
    while pos < end:
        if pos + size > end:
            break
        kind, t_ms, length = unpack(plain, pos)
        if pos + size + length > end:
            break
        try:
            record_kind = Kind(kind)
        except ValueError:
            raise RecordingCorrupt(f"record {len(records) + 1} has unknown kind {kind}") from None
        records.append(Record(record_kind, t_ms, plain[pos + size : pos + size + length]))
        pos += size + length
    if pos < end and not partial_ok:
        raise RecordingCorrupt("the last record is cut short inside an authentic segment")
    return records


class SegmentWriter:
    """Seals one recording as it is made: :meth:`start` gives the file's first bytes,
    each :meth:`seal` one writer flush as authenticated segments to append after them.

    ``data_key``: 32 random bytes, this recording's only (see
    ``orchestrator.recording_keys.new_data_key``); ``header``: the recording's header
    (its nonce prefix must not have been used with this key). Segments hold at most
    ``max_segment_bytes`` of plaintext (1 MiB by default); a larger flush is split.

    Raises:
        ValueError: the data key is not 32 bytes, or ``max_segment_bytes`` out of range.
    """

    def __init__(
        self,
        data_key: bytes,
        header: RecordingHeader,
        *,
        max_segment_bytes: int = MAX_SEGMENT_BYTES,
    ) -> None:
        if not 1 <= max_segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"max_segment_bytes must be within 1..{MAX_SEGMENT_BYTES}")
        if header.version != FORMAT_VERSION:
            raise ValueError(f"this build writes format version {FORMAT_VERSION} only")
        self._aead = _check_data_key(data_key)
        self._prefix = header.nonce_prefix
        body = msgspec.json.encode(header)
        self._header_bytes = MAGIC + _PREAMBLE.pack(FORMAT_VERSION, len(body)) + body
        self._max = max_segment_bytes
        self._counter = 0
        self.finished = False
        """True once the last segment is sealed."""

    def start(self) -> bytes:
        """The file's first bytes: magic, version, header length and header JSON."""
        return self._header_bytes

    def seal(self, records: Sequence[Record], *, last: bool = False) -> bytes:
        """``records`` as authenticated segments (bytes to append to the file). With
        ``last`` the final segment is flagged last and the writer is finished. No records
        and not ``last`` gives ``b""`` (nothing to append).

        Raises:
            RuntimeError: the writer is finished, or 2**32 segments were sealed.
        """
        if self.finished:
            raise RuntimeError("the recording is finished: nothing can follow its last segment")
        plain = pack_records(records)
        if not plain and not last:
            return b""
        step = self._max
        pieces = [plain[i : i + step] for i in range(0, len(plain), step)] or [b""]
        out: list[bytes] = []
        for index, piece in enumerate(pieces):
            is_last = last and index == len(pieces) - 1
            if self._counter > _MAX_COUNTER:
                raise RuntimeError("a recording holds at most 2**32 segments")
            nonce = _nonce(self._prefix, self._counter, is_last)
            sealed = self._aead.encrypt(nonce, piece, self._header_bytes)
            self._counter += 1
            out.append(_LENGTH.pack(len(sealed) | (_LAST_BIT if is_last else 0)))
            out.append(sealed)
        if last:
            self.finished = True
        return b"".join(out)


def _parse_header(blob: bytes | memoryview) -> tuple[RecordingHeader, int]:
    if len(blob) < len(MAGIC) or bytes(blob[: len(MAGIC)]) != MAGIC:
        empty = " (the file is empty)" if not len(blob) else ""
        raise RecordingCorrupt(f"not a Switchboard recording{empty}")
    start = len(MAGIC) + _PREAMBLE.size
    if len(blob) < start:
        raise RecordingCorrupt("truncated: the header is cut short")
    version, size = _PREAMBLE.unpack_from(blob, len(MAGIC))
    if version != FORMAT_VERSION:
        raise RecordingCorrupt(
            f"format version {version} is not supported (this build reads {FORMAT_VERSION})"
        )
    if size > _MAX_HEADER_BYTES:
        raise RecordingCorrupt(
            f"the header length ({size} bytes) is not valid: the file was altered"
        )
    if len(blob) < start + size:
        raise RecordingCorrupt("truncated: the header is cut short")
    try:
        header = _HEADER_DECODER.decode(blob[start : start + size])
    except msgspec.DecodeError as exc:
        raise RecordingCorrupt(f"the header is not valid ({exc}): the file was altered") from None
    if header.version != version:
        raise RecordingCorrupt("the header's version disagrees with the file's: it was altered")
    return header, start + size


def read_header(blob: bytes) -> RecordingHeader:
    """The header of a sealed recording, read without a key (and so not yet authenticated:
    :func:`read_records` authenticates it with every segment). ``blob`` may be the whole
    file or any prefix holding the header.

    Raises:
        RecordingCorrupt: not a recording, an unsupported version, a cut or malformed header.
    """
    return _parse_header(memoryview(blob))[0]


def read_records(
    blob: bytes, data_key: bytes, *, allow_truncated: bool = False
) -> tuple[RecordingHeader, list[Record]]:
    """Authenticate and decrypt a whole sealed recording: its header and records in order.

    With ``allow_truncated`` a file whose end is missing (the writer crashed: no segment
    flagged last, or the final one cut short) gives the records of the segments that
    verify; an altered segment is still an error. Records are never returned from a
    segment that did not verify.

    Raises:
        RecordingCorrupt: not a recording, unsupported version, truncated (unless
            allowed), a segment that fails authentication (altered, reordered, from
            another file, or the wrong key), or bytes after the last segment.
        ValueError: ``data_key`` is not 32 bytes.
    """
    aead = _check_data_key(data_key)
    view = memoryview(blob)
    header, pos = _parse_header(view)
    aad = bytes(view[:pos])
    end = len(view)
    plain: list[bytes] = []
    counter = 0
    truncated: str | None = None
    while True:
        number = counter + 1  # operators count from 1
        if pos == end:
            truncated = "truncated: the last segment is missing (the call's writer did not finish)"
            break
        if pos + _LENGTH.size > end:
            truncated = (
                f"truncated: segment {number} is cut short (the call's writer did not finish)"
            )
            break
        (word,) = _LENGTH.unpack_from(view, pos)
        last, size = bool(word & _LAST_BIT), word & ~_LAST_BIT
        if not _TAG_BYTES <= size <= MAX_SEGMENT_BYTES + _TAG_BYTES:
            raise RecordingCorrupt(
                f"segment {number}'s length ({size} bytes) is not valid: the file was altered"
            )
        pos += _LENGTH.size
        if pos + size > end:
            truncated = (
                f"truncated: segment {number} is cut short (the call's writer did not finish)"
            )
            break
        if counter > _MAX_COUNTER:
            raise RecordingCorrupt("more than 2**32 segments: the file was altered")
        try:
            plain.append(
                aead.decrypt(
                    _nonce(header.nonce_prefix, counter, last), view[pos : pos + size], aad
                )
            )
        except InvalidTag:
            raise RecordingCorrupt(
                f"segment {number} failed authentication: the file was altered or the key is wrong"
            ) from None
        pos += size
        counter += 1
        if last:
            if pos != end:
                raise RecordingCorrupt(
                    f"{end - pos} bytes follow the last segment: the file was altered"
                )
            break
    if truncated is not None and not allow_truncated:
        raise RecordingCorrupt(truncated)
    return header, _unpack_records(b"".join(plain), partial_ok=truncated is not None)
