"""Development credentials, kept in the data folder so ``serve`` and ``call`` agree.

At first start ``serve`` creates an API key for the demo tenant and, when no
``TWILIO_AUTH_TOKEN`` is set, a development Twilio auth token to sign and check
webhooks with; both are printed once and kept (mode 0600) in
``DATA_DIR/dev-credentials.json``. ``switchboard call`` reads them from there.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "dev-credentials.json"


@dataclass(frozen=True)
class DevCredentials:
    tenant: str
    api_key: str
    twilio_auth_token: str


def path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def load(data_dir: Path) -> DevCredentials | None:
    try:
        data = json.loads(path(data_dir).read_text(encoding="utf-8"))
        return DevCredentials(data["tenant"], data["api_key"], data["twilio_auth_token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(data_dir: Path, creds: DevCredentials) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    target = path(data_dir)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(creds), f, indent=2)
    tmp.replace(target)


def new_twilio_token() -> str:
    return secrets.token_hex(16)


ENGINE_KEY_FILE = "engine-api-key"
ENGINE_KEY_PREFIX = "sbe_"
"""Admin keys start so: told apart from tenant API keys at a glance."""


def engine_key(data_dir: Path) -> tuple[str, bool]:
    """Development mode's admin key for the configuration API (``ENGINE_API_KEY``
    unset): the one kept in ``DATA_DIR/engine-api-key`` (mode 0600), made on first
    use; and whether it was made now."""
    target = data_dir / ENGINE_KEY_FILE
    try:
        return target.read_text(encoding="utf-8").strip(), False
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = ENGINE_KEY_PREFIX + secrets.token_urlsafe(32)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    try:
        os.link(tmp, target)  # the first writer wins; the others read its key
    except FileExistsError:
        return target.read_text(encoding="utf-8").strip(), False
    finally:
        tmp.unlink()
    return key, True
