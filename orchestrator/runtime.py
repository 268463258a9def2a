"""What one server process holds for all its calls."""

from __future__ import annotations

from dataclasses import dataclass, field

from .call import CallResources
from .config import Settings
from .store import Store
from .tokens import Keyring


@dataclass
class Runtime:
    settings: Settings
    store: Store
    resources: CallResources
    twilio_auth_token: str
    keyring: Keyring = field(default_factory=Keyring.generate)
    """Replaced whole to rotate secrets; a call in flight is never re-checked."""
    dev_api_key: str | None = None
    """Development mode only: the key the practice page's sessions are made with."""
    draining: bool = False
    """Set when the server stops taking calls: /ready answers 503, new calls are refused."""
    active_calls: int = 0
    """Call WebSockets open now (phone and browser)."""
