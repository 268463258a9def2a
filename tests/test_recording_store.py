"""The recording stores: a local folder, and S3 through a real S3 HTTP server on loopback
(moto in server mode), the way a deployment reaches AWS S3, MinIO, R2 or Supabase."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import boto3
import pytest
from moto.server import ThreadedMotoServer

from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.errors import ConfigError
from switchboard.orchestrator.recording_store import (
    LocalRecordingStore,
    RecordingMissing,
    RecordingStore,
    RecordingStoreError,
    S3Location,
    S3RecordingStore,
    object_key,
    open_store,
    parse_store_location,
)

BUCKET = "call-recordings"
MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for this module's tests."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 finds the credentials in the standard variables, as in production."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_bucket(s3_endpoint: str, s3_credentials: None) -> str:
    """A fresh bucket (each test its own) on the loopback S3 server."""
    name = f"{BUCKET}-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def _raw(endpoint: str) -> object:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> RecordingStore:
    if request.param == "local":
        return LocalRecordingStore(tmp_path / "recordings")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3RecordingStore(S3Location(bucket, "calls/"), endpoint_url=endpoint)


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"staging-{secrets.token_hex(4)}.sbrec"
    path.write_bytes(data)
    return path


def test_put_get_replace_delete(any_store: RecordingStore, tmp_path: Path) -> None:
    key = object_key(uuid4(), uuid4())
    other = object_key(uuid4(), uuid4())
    first = secrets.token_bytes(70_001)
    any_store.put_file(key, _file(tmp_path, first))
    assert any_store.get(key) == first
    with pytest.raises(RecordingMissing):
        any_store.get(other)
    second = secrets.token_bytes(333)
    any_store.put_file(key, _file(tmp_path, second))
    assert any_store.get(key) == second
    any_store.delete(key)
    with pytest.raises(RecordingMissing):
        any_store.get(key)
    any_store.delete(key)  # idempotent
    any_store.delete(other)  # never stored: nothing to do


TENANT, SESSION = (
    UUID("0b8e3f57-6f0c-4a57-9d35-3f4f8f2b2a11"),
    UUID("7c2d1e90-4b3a-4f6e-8a1d-2e9c5b7f0d22"),
)
"""Fixed, so every pytest-xdist worker collects the same test ids."""


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "/etc/passwd",
        f"{TENANT}/../{SESSION}.sbrec",
        f"{TENANT}/{SESSION}.sbrec/..",
        f"{TENANT}/{SESSION}",
        f"{str(TENANT).upper()}/{SESSION}.sbrec",
        f"{TENANT}\\{SESSION}.sbrec",
        "",
    ],
)
def test_a_key_object_key_could_not_make_is_refused_before_any_io(
    any_store: RecordingStore, tmp_path: Path, key: str
) -> None:
    source = _file(tmp_path, b"x")
    for attempt in (
        lambda: any_store.put_file(key, source),
        lambda: any_store.get(key),
        lambda: any_store.delete(key),
    ):
        with pytest.raises(ValueError, match="not a recording key"):
            attempt()


def test_local_files_are_private_and_no_part_is_left(tmp_path: Path) -> None:
    store = LocalRecordingStore(tmp_path / "recordings")
    tenant, session = uuid4(), uuid4()
    key = object_key(tenant, session)
    store.put_file(key, _file(tmp_path, b"sealed"))
    path = tmp_path / "recordings" / str(tenant) / f"{session}.sbrec"
    assert path.read_bytes() == b"sealed"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_failed_local_put_keeps_the_old_object_and_leaves_no_part(tmp_path: Path) -> None:
    store = LocalRecordingStore(tmp_path / "recordings")
    key = object_key(uuid4(), uuid4())
    store.put_file(key, _file(tmp_path, b"old"))
    with pytest.raises(RecordingStoreError, match="cannot store"):
        store.put_file(key, tmp_path / "no-such-staging-file")
    assert store.get(key) == b"old"
    folder = (tmp_path / "recordings" / key).parent
    assert len(list(folder.iterdir())) == 1


def test_s3_objects_are_under_the_prefix(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    store = S3RecordingStore(
        S3Location(s3_bucket, "tenant-data/recordings/"), endpoint_url=s3_endpoint
    )
    key = object_key(uuid4(), uuid4())
    store.put_file(key, _file(tmp_path, b"sealed"))
    listed = _raw(s3_endpoint).list_objects_v2(Bucket=s3_bucket)  # type: ignore[attr-defined]
    assert [o["Key"] for o in listed["Contents"]] == [f"tenant-data/recordings/{key}"]


def test_a_large_recording_goes_up_in_parts(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = S3RecordingStore(
        S3Location(s3_bucket), endpoint_url=s3_endpoint, multipart_threshold_bytes=5 * MIB
    )
    key = object_key(uuid4(), uuid4())
    data = os.urandom(11 * MIB + 123)
    store.put_file(key, _file(tmp_path, data))
    head = _raw(s3_endpoint).head_object(Bucket=s3_bucket, Key=key)  # type: ignore[attr-defined]
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    assert store.get(key) == data


def test_s3_failures_are_store_errors_that_say_so(
    s3_endpoint: str, s3_credentials: None, tmp_path: Path
) -> None:
    key = object_key(uuid4(), uuid4())
    no_bucket = S3RecordingStore(S3Location("no-such-bucket-here"), endpoint_url=s3_endpoint)
    with pytest.raises(RecordingStoreError, match="NoSuchBucket") as caught:
        no_bucket.get(key)
    assert not isinstance(caught.value, RecordingMissing)
    with pytest.raises(RecordingStoreError, match="cannot store"):
        no_bucket.put_file(key, _file(tmp_path, b"x"))
    closed = S3RecordingStore(S3Location(BUCKET), endpoint_url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(RecordingStoreError, match="cannot read"):
        closed.get(key)


def test_the_settings_choose_the_store(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    default = open_store(Settings(data_dir=tmp_path))
    assert isinstance(default, LocalRecordingStore)
    assert default.root == tmp_path / "recordings"
    elsewhere = open_store(Settings.from_env({"RECORDING_STORE": str(tmp_path / "rec")}))
    assert isinstance(elsewhere, LocalRecordingStore) and elsewhere.root == tmp_path / "rec"
    env = {
        "RECORDING_STORE": f"s3://{s3_bucket}/prod/",
        "RECORDING_S3_ENDPOINT": s3_endpoint,
        "RECORDING_S3_REGION": "eu-west-1",
    }
    s3 = open_store(Settings.from_env(env))
    assert isinstance(s3, S3RecordingStore)
    assert s3.location == S3Location(s3_bucket, "prod/")
    key = object_key(uuid4(), uuid4())
    s3.put_file(key, _file(tmp_path, b"through the settings"))
    assert s3.get(key) == b"through the settings"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("s3://bucket-1", S3Location("bucket-1", "")),
        ("s3://bucket-1/", S3Location("bucket-1", "")),
        ("s3://my.bucket/a/b/", S3Location("my.bucket", "a/b/")),
        ("/var/lib/rec", Path("/var/lib/rec")),
        ("file:///var/lib/rec", Path("/var/lib/rec")),
    ],
)
def test_store_locations(value: str | None, expected: object) -> None:
    assert parse_store_location(value) == expected


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"RECORDING_STORE": "s3://Bad_Bucket/x"}, "not an S3 bucket name"),
        ({"RECORDING_STORE": "s3://ok-bucket/a b"}, "unsafe characters"),
        ({"RECORDING_STORE": "relative/folder"}, "absolute folder"),
        ({"RECORDING_STORE": "gs://bucket"}, "absolute folder"),
        ({"RECORDING_S3_PATH_STYLE": "maybe"}, "true or false"),
        ({"RECORDING_SWEEP_INTERVAL_S": "0"}, "RECORDING_SWEEP_INTERVAL_S"),
    ],
)
def test_wrong_settings_are_refused_at_start(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.from_env(env)
