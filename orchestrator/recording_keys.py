"""Who can open a recording: its data key, wrapped by the server's keyring or a tenant's RSA key.

Envelope encryption: every recording is sealed with its own random 32-byte data key
(:func:`new_data_key`, AES-256-GCM in ``codecs.recording_format``); only the data key
*wrapped* is ever stored, never the plain key. Two ways to wrap it:

* the server's **keyring** (:class:`Keyring`): named 256-bit keys, from ``RECORDING_KEYS``
  (``kid=base64key,kid2=base64key``; the first wraps new recordings, all unwrap, so a key
  rotates by putting a new one first and dropping the old one once nothing it wrapped is
  kept), or when that is unset a key file made once under the data directory. Wrapping
  is RFC 3394 AES key wrap, which is itself authenticated (a wrong key or altered
  wrapped bytes is detected). The wrapped key and its ``kid`` go in the database row.
* a tenant's **RSA public key** (:func:`wrap_rsa`): RSA-OAEP with SHA-256 and MGF1-SHA-256
  (RFC 8017 section 7.1), the hybrid scheme Twilio's recording encryption uses, so only
  the private key's holder can play the recording (``switchboard recording decrypt
  --key private.pem``). ``kid`` is ``"rsa:"`` + the first 16 hex digits of the SHA-256 of
  the public key's DER SubjectPublicKeyInfo.

Exceptions::

    ConfigError                 RECORDING_KEYS or the key file is malformed
    RecordingKeyError           a data key could not be unwrapped
    ├── UnknownKey              no key with that kid here (or an RSA recording on the server)
    └── KeyMismatch             the key does not open these wrapped bytes (wrong or altered)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .errors import ConfigError, SwitchboardError

__all__ = [
    "KEY_FILE_NAME",
    "KeyMismatch",
    "Keyring",
    "RecordingKeyError",
    "UnknownKey",
    "new_data_key",
    "parse_recording_keys",
    "rsa_kid",
    "unwrap_rsa",
    "wrap_rsa",
]

KEY_BYTES: Final = 32
"""Keyring keys and data keys are 256-bit."""
KEY_FILE_NAME: Final = "recording_keys"
"""The key file under the data directory, used when ``RECORDING_KEYS`` is unset."""
MIN_RSA_BITS: Final = 2048
_OAEP: Final = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class RecordingKeyError(SwitchboardError):
    """A recording's data key could not be unwrapped."""


class UnknownKey(RecordingKeyError):  # noqa: N818 - the interface name
    """No key here has the recording's ``kid``."""


class KeyMismatch(RecordingKeyError):  # noqa: N818 - what happened, like UnknownKey
    """The key does not open these wrapped bytes: the wrong key, or the bytes were altered."""


def new_data_key() -> bytes:
    """A fresh random data key for one recording: 32 bytes from the OS's CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


def _check_kid(kid: str, where: str) -> None:
    if not kid:
        raise ConfigError(f"{where}: an entry has no kid before '='")
    if kid.startswith("rsa:"):
        raise ConfigError(f"{where}: kid {kid!r}: the 'rsa:' prefix is kept for RSA keys")
    if any(ch.isspace() or ch in ",=" for ch in kid) or len(kid) > 64:
        raise ConfigError(
            f"{where}: kid {kid!r} must be at most 64 characters without spaces, ',' or '='"
        )


def parse_recording_keys(text: str, where: str = "RECORDING_KEYS") -> list[tuple[str, bytes]]:
    """``kid=base64key`` entries separated by commas or new lines, in order (the first
    encrypts). Each key is 32 bytes in standard or URL-safe base64.

    Raises:
        ConfigError: empty, an entry without ``=``, a bad kid, bad base64, a key that is
            not 32 bytes, or a kid given twice; the message names ``where`` and the kid.
    """
    entries: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for raw in text.replace("\n", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        kid, sep, value = entry.partition("=")
        kid = kid.strip()
        if not sep:
            raise ConfigError(f"{where}: entry {kid!r} is not kid=base64key")
        _check_kid(kid, where)
        value = value.strip()
        try:
            key = base64.b64decode(
                value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4),
                validate=True,
            )
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: key {kid!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"{where}: key {kid!r} is {len(key)} bytes; it must be {KEY_BYTES} "
                "(make one with `switchboard recording keygen`)"
            )
        if kid in seen:
            raise ConfigError(f"{where}: kid {kid!r} is given twice")
        seen.add(kid)
        entries.append((kid, key))
    if not entries:
        raise ConfigError(f"{where}: no keys (expected kid=base64key[,kid2=base64key...])")
    return entries


def format_entry(kid: str, key: bytes) -> str:
    """One ``kid=base64key`` entry for ``RECORDING_KEYS`` (standard base64)."""
    _check_kid(kid, "kid")
    return f"{kid}={base64.b64encode(key).decode()}"


class Keyring:
    """The server's recording keys: the first wraps new data keys, all unwrap.

    Built from ``(kid, 32-byte key)`` pairs (:meth:`from_setting`, :meth:`load_or_create`).
    """

    def __init__(self, entries: Iterable[tuple[str, bytes]]) -> None:
        self._keys: dict[str, bytes] = {}
        for kid, key in entries:
            _check_kid(kid, "keyring")
            if len(key) != KEY_BYTES:
                raise ConfigError(f"keyring: key {kid!r} must be {KEY_BYTES} bytes")
            if kid in self._keys:
                raise ConfigError(f"keyring: kid {kid!r} is given twice")
            self._keys[kid] = bytes(key)
        if not self._keys:
            raise ConfigError("keyring: no keys")
        self.primary_kid: str = next(iter(self._keys))
        """The kid that wraps new data keys."""

    @classmethod
    def from_setting(cls, text: str) -> Keyring:
        """The keyring of a ``RECORDING_KEYS`` value (:func:`parse_recording_keys`)."""
        return cls(parse_recording_keys(text))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Keyring:
        """The keyring in ``data_dir/recording_keys``, made (one random key, mode 0600,
        written atomically) the first time. Two processes racing make one file.

        Raises:
            ConfigError: the file exists but is malformed.
            OSError: the data directory cannot be written.
        """
        path = data_dir / KEY_FILE_NAME
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            kid = f"local-{secrets.token_hex(4)}"
            _write_new_file(path, (format_entry(kid, new_data_key()) + "\n").encode())
        return cls(parse_recording_keys(path.read_text(), where=str(path)))

    @classmethod
    def for_server(
        cls, recording_keys: str | None, data_dir: Path, *, create: bool = True
    ) -> Keyring:
        """``RECORDING_KEYS`` when set, else the data directory's key file (made when
        missing unless ``create`` is False: a tool that only decrypts makes no key).

        Raises:
            ConfigError: malformed keys, or (``create`` False) no key file.
        """
        if recording_keys:
            return cls.from_setting(recording_keys)
        if not create and not (data_dir / KEY_FILE_NAME).exists():
            raise ConfigError(
                f"no recording keys: RECORDING_KEYS is unset and {data_dir / KEY_FILE_NAME} "
                "does not exist (use the server's RECORDING_KEYS or --data-dir)"
            )
        return cls.load_or_create(data_dir)

    @property
    def kids(self) -> tuple[str, ...]:
        """Every kid, the primary first."""
        return tuple(self._keys)

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        """``(primary kid, data_key wrapped)``: RFC 3394 AES key wrap, 40 bytes for a
        32-byte data key."""
        if len(data_key) != KEY_BYTES:
            raise ValueError(f"the data key must be {KEY_BYTES} bytes")
        return self.primary_kid, aes_key_wrap(self._keys[self.primary_kid], data_key)

    def unwrap(self, kid: str, wrapped: bytes) -> bytes:
        """The data key ``wrapped`` under ``kid``.

        Raises:
            UnknownKey: this keyring has no ``kid`` (an RSA kid is never here).
            KeyMismatch: the key's integrity check failed (altered bytes).
        """
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKey(
                f"no recording key {kid!r} here (keys: {', '.join(self._keys)})"
                + (": it was sealed for a tenant's RSA key" if kid.startswith("rsa:") else "")
            )
        try:
            return aes_key_unwrap(key, wrapped)
        except (InvalidUnwrap, ValueError):
            raise KeyMismatch(f"key {kid!r} does not unwrap this data key (altered?)") from None


def _write_new_file(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) only if it does not exist: a private temporary file
    in the same folder, fsynced, then hard-linked to its name (no-clobber, atomic)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process made it first: use theirs
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def _load_public(public_pem: bytes) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError("not a PEM public key (expected -----BEGIN PUBLIC KEY-----)") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError("the public key is not an RSA key")
    if key.key_size < MIN_RSA_BITS:
        raise ConfigError(f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS}")
    return key


def _fingerprint(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "rsa:" + hashlib.sha256(der).hexdigest()[:16]


def rsa_kid(public_pem: bytes) -> str:
    """``"rsa:"`` + the first 16 hex digits of SHA-256 over the key's DER
    SubjectPublicKeyInfo.

    Raises:
        ConfigError: not a PEM RSA public key of at least 2048 bits.
    """
    return _fingerprint(_load_public(public_pem))


def wrap_rsa(public_pem: bytes, data_key: bytes) -> tuple[str, bytes]:
    """``(kid, data_key encrypted with RSA-OAEP SHA-256 / MGF1-SHA-256)`` for a tenant's
    PEM public key (``-----BEGIN PUBLIC KEY-----``).

    Raises:
        ConfigError: not a PEM RSA public key of at least 2048 bits.
    """
    key = _load_public(public_pem)
    return _fingerprint(key), key.encrypt(data_key, _OAEP)


def load_rsa_private(private_pem: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """A PEM RSA private key (PKCS#1 or PKCS#8, encrypted with ``password`` or not).

    Raises:
        ConfigError: not a PEM RSA private key, or the password is wrong or missing.
    """
    try:
        key = serialization.load_pem_private_key(private_pem, password=password)
    except TypeError:  # password missing, or given for an unencrypted key
        raise ConfigError(
            "the private key is encrypted: its password is needed"
            if password is None
            else "the private key is not encrypted: give no password"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            "not a PEM private key, or its password is wrong "
            "(expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("the private key is not an RSA key")
    return key


def private_kid(private_pem: bytes, password: bytes | None = None) -> str:
    """The ``rsa:`` kid of a private key's public half (to match a recording's kid)."""
    return _fingerprint(load_rsa_private(private_pem, password).public_key())


def unwrap_rsa(private_pem: bytes, wrapped: bytes, password: bytes | None = None) -> bytes:
    """The data key ``wrapped`` by :func:`wrap_rsa`, opened with the PEM private key.

    Raises:
        ConfigError: not a PEM RSA private key (or a wrong password).
        KeyMismatch: this private key does not open ``wrapped`` (another key's, or altered).
    """
    key = load_rsa_private(private_pem, password)
    try:
        data_key = key.decrypt(wrapped, _OAEP)
    except ValueError:
        raise KeyMismatch(
            f"the private key ({_fingerprint(key.public_key())}) does not open this data key"
        ) from None
    if len(data_key) != KEY_BYTES:
        raise KeyMismatch(f"the unwrapped data key is {len(data_key)} bytes, not {KEY_BYTES}")
    return data_key
