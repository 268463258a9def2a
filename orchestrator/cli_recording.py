"""``switchboard recording``: decrypt a sealed recording to WAV, make a keyring key.

    switchboard recording decrypt FILE -o OUT.wav [--key private.pem] [--password-env VAR]
                                  [--track caller|agent|both] [--raw] [--allow-truncated]
                                  [--data-dir DIR]
    switchboard recording keygen [--kid KID]

``decrypt`` opens the data key one of two ways. With ``--key`` (a recording sealed for a
tenant's RSA public key): the RSA-wrapped key in the file's header, opened with the
private key; nothing else is needed, no server, no database. Without it (a recording
sealed by the server's keyring): the wrapped key from the recording's database row
(found by the tenant and session in the file's header), unwrapped by the server's keys
(``RECORDING_KEYS``, else the data folder's key file), so run it where the server runs.

Exit status: 0 done; 1 the file is not a readable recording (truncated, altered, wrong
key); 2 a usage or configuration error (wrong key kind, key file, database).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from switchboard.codecs.recording_format import (
    Kind,
    Record,
    RecordingCorrupt,
    RecordingHeader,
    read_header,
    read_records,
    unpack_provider_event,
)
from switchboard.codecs.wav import WavSource

from .config import Settings, default_data_dir
from .errors import ConfigError
from .recording_keys import (
    RecordingKeyError,
    format_entry,
    new_data_key,
    private_kid,
    unwrap_rsa,
)
from .recording_render import wav_of

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``recording decrypt`` and ``recording keygen`` to the CLI's subcommands
    (``commands``: the ``add_subparsers()`` object); each sets ``handler`` on its args."""
    recording = commands.add_parser("recording", help="decrypt recordings, make recording keys")
    sub = recording.add_subparsers(dest="recording_command", required=True, metavar="SUBCOMMAND")

    decrypt = sub.add_parser(
        "decrypt",
        help="decrypt a sealed recording (.sbrec) to a WAV file",
        description="Authenticate and decrypt a sealed recording and write its tracks as WAV "
        "(PCM16; both: stereo, left caller, right agent). With --key, the private key opens "
        "the RSA-wrapped data key in the file; without it, the server's keyring opens the "
        "wrapped key kept in the recording's database row. A truncated or altered file is "
        "refused and nothing is written.",
    )
    decrypt.add_argument("file", type=Path, help="the sealed recording")
    decrypt.add_argument("-o", "--output", type=Path, required=True, help="the file to write")
    decrypt.add_argument("--key", type=Path, help="the tenant's RSA private key (PEM)")
    decrypt.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the private key's password "
        "(else asked for on a terminal when the key is encrypted)",
    )
    decrypt.add_argument(
        "--track",
        choices=("caller", "agent", "both"),
        default="both",
        help="which track(s) to write (default both, as stereo)",
    )
    decrypt.add_argument(
        "--raw",
        action="store_true",
        help="write the decrypted records instead of a WAV: JSON lines, the header first, "
        "then one record per line (kind, t_ms, bytes, data in base64; provider events as "
        "source and text) exactly as recorded",
    )
    decrypt.add_argument(
        "--allow-truncated",
        action="store_true",
        help="keep what verifies of a recording whose end is missing (a crashed call)",
    )
    decrypt.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"the server's data folder, for its key file and database (default "
        f"{default_data_dir()})",
    )
    decrypt.set_defaults(handler=cmd_decrypt)

    keygen = sub.add_parser(
        "keygen",
        help="print a new RECORDING_KEYS entry (kid=base64key)",
        description="Print a fresh random 256-bit key as a RECORDING_KEYS entry. To rotate, "
        "put it first in RECORDING_KEYS and keep the old entries after it.",
    )
    keygen.add_argument("--kid", default=None, help="the key's id (default k<UTC date and time>)")
    keygen.set_defaults(handler=cmd_keygen)


def cmd_keygen(args: argparse.Namespace) -> int:
    kid = args.kid or f"k{datetime.now(UTC):%Y%m%d%H%M}"
    print(format_entry(kid, new_data_key()))
    return 0


def cmd_decrypt(args: argparse.Namespace) -> int:
    blob = args.file.read_bytes()
    try:
        header = read_header(blob)
        data_key = (
            _rsa_data_key(header, args.key, args.password_env)
            if args.key is not None
            else _keyring_data_key(header, args.data_dir)
        )
        _, records = read_records(blob, data_key, allow_truncated=args.allow_truncated)
    except RecordingCorrupt as exc:
        hint = (
            " (--allow-truncated keeps what verifies)"
            if str(exc).startswith("truncated") and not args.allow_truncated
            else ""
        )
        print(f"error: {args.file}: {exc}{hint}", file=sys.stderr)
        return 1
    if args.raw:
        _write_atomically(args.output, [_raw_lines(header, records)])
    else:
        source = _wav(header, records, args.track)
        _write_atomically(args.output, source.iter_range(0, source.size))
    return 0


def _rsa_data_key(header: RecordingHeader, key_path: Path, password_env: str | None) -> bytes:
    if header.key.kind != "rsa" or header.key.wrapped is None:
        raise ConfigError(
            f"this recording was sealed by the server's keyring (kid {header.key.kid}), not an "
            "RSA key: run `switchboard recording decrypt` without --key where the server runs"
        )
    pem = key_path.read_bytes()
    password = os.environ[password_env].encode() if password_env else None
    try:
        mine = private_kid(pem, password)
    except ConfigError as exc:
        if password is not None or "password is needed" not in str(exc) or not sys.stdin.isatty():
            raise
        password = getpass.getpass(f"password for {key_path}: ").encode()
        mine = private_kid(pem, password)
    if mine != header.key.kid:
        raise ConfigError(f"this recording was sealed for {header.key.kid}; {key_path} is {mine}")
    return unwrap_rsa(pem, header.key.wrapped, password)


def _keyring_data_key(header: RecordingHeader, data_dir: Path | None) -> bytes:
    if header.key.kind == "rsa":
        raise ConfigError(
            f"this recording was sealed for the tenant's RSA key {header.key.kid}: the server "
            "cannot open it; pass --key private.pem"
        )
    from .db import Database, migrate
    from .recording_rows import get_recording
    from .server import open_database
    from .store import Store

    try:
        tenant_id, session_id = UUID(header.tenant_id), UUID(header.session_id)
    except ValueError:
        raise RecordingCorrupt("the header's tenant or session id is not a UUID") from None
    settings = Settings.from_env(data_dir=data_dir)
    keyring = settings.recording_keyring(create=False)
    with open_database(settings) as dsn:
        migrate(dsn)
        db = Database(dsn)
        try:
            row = get_recording(Store(db), tenant_id, session_id)
        finally:
            db.close()
    if row is None:  # could not be done: exit status 1, not a usage error
        raise RecordingKeyError(
            f"no recording of session {session_id} (tenant {tenant_id}) in this database"
        )
    if row.wrapped_key is None:
        raise RecordingKeyError(
            f"the recording of session {session_id} was deleted ({row.deleted_at:%Y-%m-%d %H:%M} "
            "UTC): its key is destroyed, so it can never be decrypted"
            if row.deleted_at is not None
            else f"the recording of session {session_id} has no key"
        )
    return keyring.unwrap(row.kid, row.wrapped_key)


def _wav(header: RecordingHeader, records: Sequence[Record], track: str) -> WavSource:
    try:
        return wav_of(header, records, track)
    except ValueError as exc:
        raise ConfigError(f"cannot write --track {track}: {exc}") from None


def _raw_lines(header: RecordingHeader, records: Sequence[Record]) -> bytes:
    lines = [json.dumps({"header": msgspec.to_builtins(header)})]
    for record in records:
        line: dict[str, Any] = {"kind": record.kind.name.lower(), "t_ms": record.t_ms}
        if record.kind is Kind.PROVIDER_EVENT:
            source, raw = unpack_provider_event(record.data)
            line["source"] = source
            if isinstance(raw, str):
                line["text"] = raw
            else:
                line["data"] = base64.b64encode(raw).decode()
        else:
            line["bytes"] = len(record.data)
            line["data"] = base64.b64encode(record.data).decode()
        lines.append(json.dumps(line))
    return ("\n".join(lines) + "\n").encode()


def _write_atomically(path: Path, pieces: Any) -> None:
    """Write ``pieces`` (an iterable of bytes) to ``path`` through a temporary file renamed
    into place, so a failure never leaves a partial output."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with tmp.open("wb") as handle:
            for piece in pieces:
                handle.write(piece)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
