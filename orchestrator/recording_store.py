"""Where sealed recordings are kept: a local folder, or an S3-compatible object store.

``RECORDING_STORE`` chooses (see :func:`parse_store_location`):

* unset: :class:`LocalRecordingStore` in ``DATA_DIR/recordings``;
* an absolute path (or ``file:///path``): a local folder there;
* ``s3://bucket/prefix``: :class:`S3RecordingStore` through boto3, at
  ``RECORDING_S3_ENDPOINT`` (unset: AWS S3) in ``RECORDING_S3_REGION``
  (``us-east-1``), with the credentials boto3 finds (``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role). Path-style addressing
  (``endpoint/bucket/key``, what MinIO and Supabase Storage expect) is used when
  an endpoint is set, virtual-hosted style for AWS; ``RECORDING_S3_PATH_STYLE``
  (``true``/``false``) overrides. So AWS S3, MinIO, Cloudflare R2 and Supabase
  Storage all work.

Objects are named by :func:`object_key` only: ``<tenant uuid>/<session uuid>.sbrec``,
built from UUIDs and checked again by every store operation, so a key can never
climb out of the folder or the prefix.

The stores are synchronous and blocking (boto3, file I/O): from Trio, call them
with ``trio.to_thread.run_sync``. Each may be shared by threads.

Errors::

    SwitchboardError
    └── RecordingStoreError      the store failed (I/O, network, refused); the cause is kept
        └── RecordingMissing     no object at that key
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, final
from uuid import UUID

from .errors import ConfigError, SwitchboardError

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "LocalRecordingStore",
    "RecordingMissing",
    "RecordingStore",
    "RecordingStoreError",
    "S3Location",
    "S3RecordingStore",
    "object_key",
    "open_store",
    "parse_store_location",
]

SUFFIX: Final = ".sbrec"
_UUID: Final = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_KEY: Final = re.compile(rf"^{_UUID}/{_UUID}\{SUFFIX}$")
_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's bucket naming rules
DEFAULT_REGION: Final = "us-east-1"
MULTIPART_THRESHOLD_BYTES: Final = 8 * 1024 * 1024
"""Objects from this size up are uploaded in parts of this size (boto3's default)."""


class RecordingStoreError(SwitchboardError):
    """The recording store failed: a file system or network error, or the service refused."""


class RecordingMissing(RecordingStoreError):  # noqa: N818 - says what is missing, as trio does
    """There is no object at the key (never stored, or deleted)."""


def object_key(tenant_id: UUID, session_id: UUID) -> str:
    """The key of a session's recording: ``<tenant uuid>/<session uuid>.sbrec``."""
    return f"{UUID(str(tenant_id))}/{UUID(str(session_id))}{SUFFIX}"


def _checked(key: str) -> str:
    """``key`` if :func:`object_key` could have made it; else ValueError."""
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise ValueError(f"not a recording key: {key!r:.80}")
    return key


class RecordingStore(Protocol):
    """A place for sealed recordings, by key (:func:`object_key`).

    ``put_file(key, path)`` stores the file's bytes at ``key`` whole or not at
    all (a reader never sees a part), replacing what was there;
    ``get(key)`` returns them (raises :class:`RecordingMissing`);
    ``delete(key)`` removes them and does nothing if there are none.
    Each raises ``ValueError`` for a key :func:`object_key` could not have made and
    :class:`RecordingStoreError` when the store fails.
    """

    def put_file(self, key: str, path: Path) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...


@final
class LocalRecordingStore:
    """Recordings as files under ``root`` (``root/<tenant>/<session>.sbrec``, mode 0600).

    A put copies to a temporary name in the target folder, flushes it to disk
    and renames it over the key (atomic on POSIX), so a crash leaves the old
    object or the new one, never a part.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as source:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1024 * 1024)
                    sink.flush()
                    os.fsync(sink.fileno())
            os.replace(temporary, target)
            _fsync_folder(target.parent)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise RecordingStoreError(f"cannot store recording {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise RecordingMissing(f"no recording at {key}") from None
        except OSError as exc:
            raise RecordingStoreError(f"cannot read recording {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise RecordingStoreError(f"cannot delete recording {key}: {exc}") from exc


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@final
@dataclass(frozen=True, slots=True)
class S3Location:
    """``s3://bucket/prefix``: the bucket, and the prefix keys go under (``""`` or ending
    in ``/``)."""

    bucket: str
    prefix: str = ""


@final
class S3RecordingStore:
    """Recordings as objects ``prefix + key`` in an S3-compatible bucket (boto3).

    Args:
        location: bucket and prefix.
        endpoint_url: the service's URL (MinIO, R2, Supabase, a test server);
            None: AWS S3.
        region: the signing region.
        path_style: address ``endpoint/bucket/key`` instead of
            ``bucket.endpoint/key``; None: path style when ``endpoint_url`` is set.
        multipart_threshold_bytes: uploads from this size up go in parts of this
            size (at least 5 MiB, S3's smallest part).
        client: a boto3 S3 client to use instead of making one (tests).
    """

    def __init__(
        self,
        location: S3Location,
        *,
        endpoint_url: str | None = None,
        region: str = DEFAULT_REGION,
        path_style: bool | None = None,
        multipart_threshold_bytes: int = MULTIPART_THRESHOLD_BYTES,
        client: Any = None,
    ) -> None:
        # boto3 costs 0.2 s to import: only a server that stores in S3 pays it.
        import boto3
        from boto3.exceptions import Boto3Error
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (ClientError, BotoCoreError, Boto3Error, OSError)
        if multipart_threshold_bytes < 5 * 1024 * 1024:
            raise ValueError("multipart_threshold_bytes must be at least 5 MiB (S3's least part)")
        self.location = location
        style = path_style if path_style is not None else endpoint_url is not None
        self._client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                s3={"addressing_style": "path" if style else "virtual"},
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold_bytes,
            multipart_chunksize=multipart_threshold_bytes,
            use_threads=False,  # the caller's thread; the server's threads are its own
        )

    def _name(self, key: str) -> str:
        return self.location.prefix + _checked(key)

    def put_file(self, key: str, path: Path) -> None:
        name = self._name(key)
        try:
            self._client.upload_file(str(path), self.location.bucket, name, Config=self._transfer)
        except self._errors as exc:
            raise _mapped(exc, f"cannot store recording {key}") from exc

    def get(self, key: str) -> bytes:
        name = self._name(key)
        try:
            answer = self._client.get_object(Bucket=self.location.bucket, Key=name)
            return bytes(answer["Body"].read())
        except self._errors as exc:
            raise _mapped(exc, f"cannot read recording {key}") from exc

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            self._client.delete_object(Bucket=self.location.bucket, Key=name)
        except self._errors as exc:
            mapped = _mapped(exc, f"cannot delete recording {key}")
            if isinstance(mapped, RecordingMissing):
                return  # some services answer 404 where S3 answers 204
            raise mapped from exc


_MISSING_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})


def _mapped(exc: Exception, doing: str) -> RecordingStoreError:
    """A boto3/botocore error as :class:`RecordingStoreError` (:class:`RecordingMissing`
    for a missing key), naming the service's error code."""
    response = getattr(exc, "response", None)  # botocore's ClientError
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", "?"))
        if code in _MISSING_CODES:
            return RecordingMissing(f"{doing}: no such object")
        return RecordingStoreError(f"{doing}: {code} {error.get('Message', '')}".rstrip())
    return RecordingStoreError(f"{doing}: {exc}")


def parse_store_location(value: str | None) -> Path | S3Location | None:
    """``RECORDING_STORE``: None (the default folder), a folder, or an :class:`S3Location`.

    Raises:
        ConfigError: neither an absolute path, ``file:///path`` nor
            ``s3://bucket[/prefix]`` with a valid bucket name.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.startswith("s3://"):
        bucket, _, prefix = value.removeprefix("s3://").partition("/")
        if _BUCKET.fullmatch(bucket) is None:
            raise ConfigError(
                f"RECORDING_STORE: {bucket!r} is not an S3 bucket name (3 to 63 characters:"
                " lower-case letters, digits, dots and hyphens)"
            )
        prefix = prefix.strip("/")
        if prefix and not re.fullmatch(r"[A-Za-z0-9!_.*'()/-]+", prefix):
            raise ConfigError(f"RECORDING_STORE: the prefix {prefix!r} has unsafe characters")
        return S3Location(bucket, prefix + "/" if prefix else "")
    path = Path(value.removeprefix("file://")) if value.startswith("file://") else Path(value)
    if not path.is_absolute():
        raise ConfigError(
            f"RECORDING_STORE must be s3://bucket/prefix or an absolute folder, got {value!r}"
        )
    return path


def open_store(settings: Settings) -> RecordingStore:
    """The recording store ``settings`` name (see the module docstring)."""
    where = parse_store_location(settings.recording_store)
    if where is None:
        return LocalRecordingStore(settings.data_dir / "recordings")
    if isinstance(where, Path):
        return LocalRecordingStore(where)
    return S3RecordingStore(
        where,
        endpoint_url=settings.recording_s3_endpoint,
        region=settings.recording_s3_region,
        path_style=settings.recording_s3_path_style,
    )
