"""Recording keys: the keyring (rotation, key file), RSA wrapping, and clear errors."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from recording_support import rsa_pem_pair

from switchboard.codecs.recording_format import (
    Kind,
    Record,
    RecordingHeader,
    SegmentWriter,
    TrackFormat,
    WrappedKey,
    read_records,
)
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.errors import ConfigError
from switchboard.orchestrator.recording_keys import (
    KeyMismatch,
    Keyring,
    UnknownKey,
    new_data_key,
    parse_recording_keys,
    private_kid,
    rsa_kid,
    unwrap_rsa,
    wrap_rsa,
)

K1 = bytes([1]) * 32
K2 = bytes([2]) * 32


def entry(kid: str, key: bytes) -> str:
    return f"{kid}={base64.b64encode(key).decode()}"


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[bytes, bytes]:
    return rsa_pem_pair()


def test_data_keys_are_fresh_32_bytes() -> None:
    keys = {new_data_key() for _ in range(50)}
    assert len(keys) == 50 and all(len(k) == 32 for k in keys)


def test_parse_keeps_order_and_accepts_url_safe_unpadded_base64() -> None:
    urlsafe = base64.urlsafe_b64encode(b"\xfb" * 32).decode().rstrip("=")
    text = f" k2={base64.b64encode(K2).decode()} ,\nk1={urlsafe}"
    assert parse_recording_keys(text) == [("k2", K2), ("k1", b"\xfb" * 32)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no keys"),
        (" , ", "no keys"),
        ("k1", "entry 'k1' is not kid=base64key"),
        ("=" + base64.b64encode(K1).decode(), "no kid"),
        ("k1=not*base64!", "key 'k1' is not valid base64"),
        (entry("k1", b"short"), "key 'k1' is 5 bytes; it must be 32"),
        (entry("k1", K1) + "," + entry("k1", K2), "kid 'k1' is given twice"),
        (entry("rsa:abc", K1), "'rsa:' prefix"),
        (entry("a b", K1), "without spaces"),
    ],
)
def test_malformed_recording_keys_are_clear_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_recording_keys(text)
    assert str(caught.value).startswith("RECORDING_KEYS: ")
    assert base64.b64encode(K1).decode() not in str(caught.value)  # no key in messages


def test_rotation_old_recordings_open_new_ones_use_the_new_key() -> None:
    before = Keyring.from_setting(entry("k1", K1))
    data_key = new_data_key()
    kid, wrapped = before.wrap(data_key)
    assert kid == "k1" and data_key not in wrapped and len(wrapped) == 40

    after = Keyring.from_setting(entry("k2", K2) + "," + entry("k1", K1))
    assert after.unwrap("k1", wrapped) == data_key
    new_kid, new_wrapped = after.wrap(data_key)
    assert new_kid == "k2" and after.unwrap("k2", new_wrapped) == data_key

    retired = Keyring.from_setting(entry("k2", K2))
    with pytest.raises(UnknownKey, match="no recording key 'k1' here"):
        retired.unwrap("k1", wrapped)


def test_a_recording_sealed_under_k1_plays_after_k2_is_added_first() -> None:
    data_key = new_data_key()
    kid, wrapped = Keyring.from_setting(entry("k1", K1)).wrap(data_key)
    head = RecordingHeader(
        session_id="s",
        tenant_id="t",
        caller=TrackFormat("pcmu", 8000),
        agent=TrackFormat("pcmu", 8000),
        started_at="2026-12-04T15:00:00Z",
        key=WrappedKey("keyring", kid),
    )
    records = [Record(Kind.CALLER_AUDIO, 0.0, b"\x7f" * 160)]
    writer = SegmentWriter(data_key, head)
    blob = writer.start() + writer.seal(records, last=True)

    rotated = Keyring.from_setting(entry("k2", K2) + "," + entry("k1", K1))
    assert read_records(blob, rotated.unwrap(kid, wrapped))[1] == records


def test_an_altered_wrapped_key_or_the_wrong_key_is_detected() -> None:
    ring = Keyring.from_setting(entry("k1", K1))
    _, wrapped = ring.wrap(new_data_key())
    altered = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises(KeyMismatch):
        ring.unwrap("k1", altered)
    impostor = Keyring.from_setting(entry("k1", K2))
    with pytest.raises(KeyMismatch):
        impostor.unwrap("k1", wrapped)


def test_key_file_is_made_once_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Keyring.load_or_create(data_dir)
    path = data_dir / "recording_keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir()] == ["recording_keys"]  # no temporary left
    data_key = new_data_key()
    kid, wrapped = first.wrap(data_key)
    again = Keyring.load_or_create(data_dir)
    assert again.kids == first.kids == (kid,)
    assert again.unwrap(kid, wrapped) == data_key


def test_a_malformed_key_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "recording_keys").write_text("k1=???\n")
    with pytest.raises(ConfigError, match=r"recording_keys: key 'k1' is not valid base64"):
        Keyring.load_or_create(tmp_path)


def test_settings_read_recording_keys_or_fall_back_to_the_key_file(tmp_path: Path) -> None:
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path), "RECORDING_KEYS": entry("k9", K1)}
    assert Settings.from_env(env).recording_keyring().kids == ("k9",)
    assert not (tmp_path / "recording_keys").exists()
    with pytest.raises(ConfigError, match="RECORDING_KEYS: key 'k9' is 3 bytes"):
        Settings.from_env({**env, "RECORDING_KEYS": entry("k9", b"abc")})
    unset = Settings.from_env({"SWITCHBOARD_DATA_DIR": str(tmp_path)})
    assert unset.recording_keyring().kids[0].startswith("local-")
    assert (tmp_path / "recording_keys").exists()


def test_rsa_only_the_private_key_opens_it(rsa_pair: tuple[bytes, bytes]) -> None:
    public, private = rsa_pair
    data_key = new_data_key()
    kid, wrapped = wrap_rsa(public, data_key)
    der = serialization.load_pem_public_key(public).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert kid == "rsa:" + hashlib.sha256(der).hexdigest()[:16] == rsa_kid(public)
    assert kid == private_kid(private)
    assert len(wrapped) == 256 and data_key not in wrapped
    assert unwrap_rsa(private, wrapped) == data_key
    assert wrap_rsa(public, data_key)[1] != wrapped  # OAEP is randomized

    server = Keyring.from_setting(entry("k1", K1))
    with pytest.raises(UnknownKey, match="tenant's RSA key"):
        server.unwrap(kid, wrapped)

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyMismatch, match="does not open"):
        unwrap_rsa(other_pem, wrapped)


def test_rsa_private_key_with_a_password(rsa_pair: tuple[bytes, bytes]) -> None:
    public, private = rsa_pair
    key = serialization.load_pem_private_key(private, password=None)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"hunter2"),
    )
    data_key = new_data_key()
    _, wrapped = wrap_rsa(public, data_key)
    assert unwrap_rsa(locked, wrapped, password=b"hunter2") == data_key
    with pytest.raises(ConfigError, match="password"):
        unwrap_rsa(locked, wrapped)
    with pytest.raises(ConfigError, match="password is wrong"):
        unwrap_rsa(locked, wrapped, password=b"nope")


def test_rsa_keys_that_cannot_be_used_are_refused() -> None:
    with pytest.raises(ConfigError, match="not a PEM public key"):
        wrap_rsa(b"hello", new_data_key())
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    weak_pem = weak.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError, match="1024 bits; at least 2048"):
        wrap_rsa(weak_pem, new_data_key())
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError, match="not an RSA key"):
        wrap_rsa(ec_pem, new_data_key())
    with pytest.raises(ConfigError, match="not a PEM private key"):
        unwrap_rsa(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", b"x" * 256)
