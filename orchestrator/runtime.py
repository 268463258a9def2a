"""What one server process holds for all its calls."""

from __future__ import annotations

from dataclasses import dataclass

from .call import CallResources
from .config import Settings
from .store import Store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    resources: CallResources
    twilio_auth_token: str
    draining: bool = False
