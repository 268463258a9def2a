"""The call trace file: one call, everything it saw, in one self-contained ZIP.

Written by ``switchboard trace export``, read by ``trace import`` and ``trace
show`` (and by the replay, next). A ZIP (stdlib :mod:`zipfile`, deflated)
holding:

``manifest.json``
    ``{"format": "switchboard-trace", "version": 1, "session_id", "tenant":
    {"id", "name"}, "agent": {"id", "name", "version"}, "door": "twilio" |
    "browser" | "realtime", "caller_format": {"encoding", "sample_rate"},
    "created": ISO 8601 UTC, "parts": [names present], "audio": "decrypted" |
    "not recorded" | "left out" | "unavailable: <why>", "counts": {...}}``.
``agent.json``
    The agent exactly as the call started on it: the spec stored under
    ``session.start``'s ``agent_version`` (absent when that version was never kept).
``session.json``
    The ``voice_sessions`` row (door, CallSid, numbers, status, times) and the
    ``call_logs`` row (``null`` when the call has no end record).
``events.jsonl``
    The call's events in ``seq`` order, as stored: ``{"seq", "type", "ts", "t_ms",
    "payload"}`` per line.
``tools.jsonl``
    Each tool result (``tool:result`` events) with its call's name and arguments.
``tape.jsonl`` (only when the call was recorded and the audio is in the trace)
    Every record of the call's tape in order, one per line, ``t_ms`` on the
    call's clock: ``{"kind": "caller" | "agent", "t_ms", "offset", "bytes"}``
    (a chunk of ``caller.audio`` / ``agent.audio``, in the caller's wire format),
    ``{"kind": "agent_cleared", "t_ms"}`` (barge-in: agent audio laid out at or
    after it was never heard), ``{"kind": "provider", "t_ms", "source", "text"}``
    (a text message as it arrived), ``{"kind": "provider", "t_ms", "source",
    "offset", "bytes"}`` (a binary one, in ``provider.bin``) or ``{"kind": "output",
    "t_ms", "source", "offset", "bytes"}`` (what a provider instance told the call: its
    start, a message, an event; the record's bytes in ``outputs.bin``, read with
    :mod:`switchboard.actors.instance_record`: what the replay plays back).
``caller.audio``, ``agent.audio``, ``provider.bin``, ``outputs.bin``
    The bytes the tape's offsets point into (``outputs.bin`` absent from traces
    written before replay existed).

A reader refuses a file that is not a ZIP or has no manifest of this format
(:class:`TraceError`) and a version it does not know (:class:`UnknownTraceVersion`).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from switchboard.codecs.recording_format import (
    Kind,
    Record,
    pack_provider_event,
    unpack_provider_event,
)

from .errors import SwitchboardError

__all__ = [
    "FORMAT",
    "VERSION",
    "Trace",
    "TraceError",
    "UnknownTraceVersion",
    "read_trace",
    "tool_results",
    "write_trace",
]

FORMAT: Final = "switchboard-trace"
VERSION: Final = 1
_TRACKS: Final = {Kind.CALLER_AUDIO: "caller", Kind.AGENT_AUDIO: "agent"}
_KINDS: Final = {name: kind for kind, name in _TRACKS.items()}


class TraceError(SwitchboardError):
    """The file is not a call trace, or a part of it is missing or unreadable."""


class UnknownTraceVersion(TraceError):  # noqa: N818 - says who broke what, like trio's
    """The trace was written in a format version this switchboard does not read."""


@dataclass
class Trace:
    """A call trace in memory (see the module docstring for each part).

    ``records`` is None when the trace holds no audio (not recorded, or left out).
    """

    manifest: dict[str, Any]
    session: dict[str, Any]
    events: list[dict[str, Any]]
    agent: dict[str, Any] | None = None
    records: list[Record] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many events, tool results and (with audio) tape records of each kind."""
        counts = {"events": len(self.events), "tool_results": len(self.tools)}
        if self.records is not None:
            for name, kind in (
                ("caller_chunks", Kind.CALLER_AUDIO),
                ("agent_chunks", Kind.AGENT_AUDIO),
                ("clears", Kind.AGENT_CLEARED),
                ("provider_messages", Kind.PROVIDER_EVENT),
                ("instance_records", Kind.PROVIDER_OUTPUT),
            ):
                counts[name] = sum(1 for r in self.records if r.kind is kind)
            for name, kind in (
                ("caller_bytes", Kind.CALLER_AUDIO),
                ("agent_bytes", Kind.AGENT_AUDIO),
            ):
                counts[name] = sum(len(r.data) for r in self.records if r.kind is kind)
        return counts


def tool_results(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each ``tool:result`` event as ``{"seq", "t_ms", "call_id", "name", "arguments",
    "ok", "output"}``, the arguments from its ``tool:call`` (None if that is missing)."""
    calls: dict[str, Mapping[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for event in events:
        payload = event.get("payload") or {}
        if event.get("type") == "tool:call":
            calls[str(payload.get("call_id"))] = payload
        elif event.get("type") == "tool:result":
            call = calls.get(str(payload.get("call_id")), {})
            results.append(
                {
                    "seq": event.get("seq"),
                    "t_ms": event.get("t_ms"),
                    "call_id": payload.get("call_id"),
                    "name": payload.get("name"),
                    "arguments": call.get("arguments"),
                    "ok": payload.get("ok"),
                    "output": payload.get("output"),
                }
            )
    return results


def write_trace(path: Path, trace: Trace) -> None:
    """Write ``trace`` to ``path`` (replaced whole: written beside it, then renamed).

    The manifest's ``parts`` and ``counts`` are filled in here.
    """
    parts: dict[str, bytes] = {
        "session.json": _json_bytes(trace.session),
        "events.jsonl": _jsonl(trace.events),
        "tools.jsonl": _jsonl(trace.tools),
    }
    if trace.agent is not None:
        parts["agent.json"] = _json_bytes(trace.agent)
    if trace.records is not None:
        parts.update(_tape_parts(trace.records))
    manifest = {
        **trace.manifest,
        "format": FORMAT,
        "version": VERSION,
        "parts": ["manifest.json", *parts],
        "counts": trace.counts(),
    }
    trace.manifest = manifest
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", _json_bytes(manifest))
        for name, data in parts.items():
            zf.writestr(name, data)
    partial.replace(path)


def read_trace(path: Path) -> Trace:
    """Read a trace file.

    Raises:
        TraceError: not a ZIP, no manifest, not this format, or a part missing or broken.
        UnknownTraceVersion: a format version other than :data:`VERSION`.
        OSError: the file cannot be read.
    """
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise TraceError(f"{path} is not a call trace (not a ZIP file)") from exc
    with zf:
        manifest = read_manifest(zf, path)
        names = set(zf.namelist())
        session = _read_json(zf, "session.json", path)
        events = _read_jsonl(zf, "events.jsonl", path)
        tools = _read_jsonl(zf, "tools.jsonl", path) if "tools.jsonl" in names else []
        agent = _read_json(zf, "agent.json", path) if "agent.json" in names else None
        records = _read_tape(zf, path) if "tape.jsonl" in names else None
    if not isinstance(session, dict) or (agent is not None and not isinstance(agent, dict)):
        raise TraceError(f"{path}: session.json and agent.json must hold JSON objects")
    return Trace(manifest, session, events, agent, records, tools)


def read_manifest(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    """The manifest of an open trace, checked for format and version (errors as
    :func:`read_trace`)."""
    if "manifest.json" not in zf.namelist():
        raise TraceError(f"{path} is not a call trace (no manifest.json)")
    manifest = _read_json(zf, "manifest.json", path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TraceError(f"{path} is not a call trace (the manifest's format is not {FORMAT!r})")
    version = manifest.get("version")
    if version != VERSION:
        raise UnknownTraceVersion(
            f"{path} is a call trace of format version {version!r}; this switchboard reads"
            f" version {VERSION} only"
        )
    return manifest


# -- the tape as index lines and binary parts


def _tape_parts(records: Sequence[Record]) -> dict[str, bytes]:
    blobs = {name: io.BytesIO() for name in ("caller", "agent", "provider", "outputs")}
    lines: list[dict[str, Any]] = []
    for record in records:
        if record.kind in _TRACKS:
            name = _TRACKS[record.kind]
            line = {"kind": name, "t_ms": record.t_ms, **_append(blobs[name], record.data)}
        elif record.kind is Kind.AGENT_CLEARED:
            line = {"kind": "agent_cleared", "t_ms": record.t_ms}
        elif record.kind is Kind.PROVIDER_OUTPUT:
            source, _ = unpack_provider_event(record.data)
            line = {"kind": "output", "t_ms": record.t_ms, "source": source}
            line.update(_append(blobs["outputs"], record.data))
        else:
            source, raw = unpack_provider_event(record.data)
            line = {"kind": "provider", "t_ms": record.t_ms, "source": source}
            if isinstance(raw, str):
                line["text"] = raw
            else:
                line.update(_append(blobs["provider"], raw))
        lines.append(line)
    return {
        "tape.jsonl": _jsonl(lines),
        "caller.audio": blobs["caller"].getvalue(),
        "agent.audio": blobs["agent"].getvalue(),
        "provider.bin": blobs["provider"].getvalue(),
        "outputs.bin": blobs["outputs"].getvalue(),
    }


def _append(blob: io.BytesIO, data: bytes) -> dict[str, int]:
    offset = blob.tell()
    blob.write(data)
    return {"offset": offset, "bytes": len(data)}


def _read_tape(zf: zipfile.ZipFile, path: Path) -> list[Record]:
    lines = _read_jsonl(zf, "tape.jsonl", path)
    blobs = {
        "caller": _read(zf, "caller.audio", path),
        "agent": _read(zf, "agent.audio", path),
        "provider": _read(zf, "provider.bin", path),
        "outputs": _read(zf, "outputs.bin", path) if "outputs.bin" in zf.namelist() else b"",
    }
    records: list[Record] = []
    for number, line in enumerate(lines, 1):
        try:
            kind, t_ms = line["kind"], float(line["t_ms"])
            if kind in _KINDS:
                records.append(Record(_KINDS[kind], t_ms, _slice(blobs[kind], line)))
            elif kind == "agent_cleared":
                records.append(Record(Kind.AGENT_CLEARED, t_ms, b""))
            elif kind == "provider":
                raw = line["text"] if "text" in line else _slice(blobs["provider"], line)
                data = pack_provider_event(str(line["source"]), raw)
                records.append(Record(Kind.PROVIDER_EVENT, t_ms, data))
            elif kind == "output":
                records.append(Record(Kind.PROVIDER_OUTPUT, t_ms, _slice(blobs["outputs"], line)))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise TraceError(f"{path}: tape.jsonl line {number} is broken: {exc}") from exc
    return records


def _slice(blob: bytes, line: Mapping[str, Any]) -> bytes:
    offset, size = int(line["offset"]), int(line["bytes"])
    if offset < 0 or size < 0 or offset + size > len(blob):
        raise ValueError(f"bytes {offset}..{offset + size} are outside the part")
    return blob[offset : offset + size]


# -- JSON parts


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False).encode() + b"\n"


def _jsonl(rows: Iterable[Any]) -> bytes:
    return b"".join(
        json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        for row in rows
    )


def _read(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return zf.read(name)
    except KeyError as exc:
        raise TraceError(f"{path}: the trace lacks {name}") from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise TraceError(f"{path}: {name} is unreadable: {exc}") from exc


def _read_json(zf: zipfile.ZipFile, name: str, path: Path) -> Any:
    try:
        return json.loads(_read(zf, name, path))
    except ValueError as exc:
        raise TraceError(f"{path}: {name} is not JSON: {exc}") from exc


def _read_jsonl(zf: zipfile.ZipFile, name: str, path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(_read(zf, name, path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise TraceError(f"{path}: {name} line {number} is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise TraceError(f"{path}: {name} line {number} is not a JSON object")
        rows.append(row)
    return rows
