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
