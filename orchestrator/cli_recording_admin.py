"""``switchboard tenant set-recording-key``: a tenant's RSA public key for its recordings.

    switchboard tenant set-recording-key NAME --public-key FILE.pem [--data-dir DIR]
    switchboard tenant set-recording-key NAME --clear [--data-dir DIR]

With a key set, the tenant's recordings made from then on have their data key
wrapped for that key (RSA-OAEP): only the holder of the private key can decrypt
them (``switchboard recording decrypt --key private.pem``), and the server
cannot play them. ``--clear`` returns to the server keyring; recordings made
meanwhile stay as they were made.

The file must hold one PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo), RSA, of at
least :data:`MIN_RSA_BITS` bits; anything else is refused, naming what it is.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ConfigError

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "MIN_RSA_BITS",
    "cmd_set_recording_key",
    "public_key_pem",
    "register",
    "subcommands_of",
]

MIN_RSA_BITS: Final = 2048
MAX_PEM_BYTES: Final = 64 * 1024


def public_key_pem(path: Path) -> tuple[bytes, str]:
    """The RSA public key in ``path`` as PEM (SubjectPublicKeyInfo) and its SHA-256
    fingerprint (hex, of the DER encoding).

    Raises:
        ConfigError: unreadable, not a PEM public key, not RSA, or too short.
    """
    try:
        data = path.read_bytes()[: MAX_PEM_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError(f"{path}: larger than a public key ({MAX_PEM_BYTES} bytes at most)")
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{path} holds a private key: give the public key only")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"{path}: an RSA public key is needed, not {type(key).__name__}")
    if key.key_size < MIN_RSA_BITS:
        raise ConfigError(f"{path}: the RSA key has {key.key_size} bits, at least {MIN_RSA_BITS}")
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, hashlib.sha256(der).hexdigest()


def subcommands_of(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The sub-commands of command ``name`` (``tenant``), for a module to add its own."""
    parser = commands.choices[name]
    return next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``set-recording-key`` under the ``tenant`` command of ``commands``."""
    command = subcommands_of(commands, "tenant").add_parser(
        "set-recording-key",
        help="encrypt a tenant's recordings for its RSA public key (or --clear)",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
    )
    command.add_argument("name", help="the tenant's name")
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--public-key", type=Path, metavar="FILE", help="PEM RSA public key")
    which.add_argument("--clear", action="store_true", help="back to the server keyring")
    command.add_argument("--data-dir", type=Path, default=None, help="data folder")
    command.set_defaults(handler=cmd_set_recording_key)


def cmd_set_recording_key(args: argparse.Namespace) -> int:
    """Set or clear the key; 2 for an unknown tenant (ConfigError for a bad key)."""
    from .cli import _with_store
    from .recording_rows import set_tenant_public_key

    pem, fingerprint = (None, "") if args.clear else public_key_pem(args.public_key)

    def apply(store: Store) -> bool:
        tenant_id = store.tenant_by_name(args.name)
        if tenant_id is None:
            return False
        set_tenant_public_key(store, tenant_id, pem)
        return True

    if not _with_store(args, apply):
        print(f"error: no tenant {args.name!r}", file=sys.stderr)
        return 1  # could not be done (see cli's exit statuses)
    if pem is None:
        print(f"tenant {args.name!r}: new recordings are wrapped by the server keyring")
    else:
        print(
            f"tenant {args.name!r}: new recordings are encrypted for the RSA key"
            f" sha256:{fingerprint[:16]}; the server cannot play them back"
        )
    return 0
