"""What one server process holds for all its calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .admission import Admission
from .call import CallResources
from .config import Settings
from .outage import RecentNumbers
from .recording_playback import RecordingAccess
from .store import Store
from .tokens import Keyring

if TYPE_CHECKING:
    from .live_config import LiveConfig


@dataclass
class Runtime:
    """One worker's shared state.

    ``serve`` builds ``admission`` on the server's call table and metrics, and
    gives ``resources.metrics`` its failover counters (``admission.metrics.failover``),
    so ``GET /metrics`` shows both; the default is a single-process admission
    with the default capacities.
    """

    settings: Settings
    store: Store
    resources: CallResources
    twilio_auth_token: str
    keyring: Keyring = field(default_factory=Keyring.generate)
    """Replaced whole to rotate secrets; a call in flight is never re-checked."""
    dev_api_key: str | None = None
    """Development mode only: the key the practice page's sessions are made with."""
    admission: Admission = field(default_factory=Admission.in_process)
    """Who may call now: capacity, reservations, draining (see :mod:`.admission`)."""
    numbers: RecentNumbers = field(default_factory=RecentNumbers)
    """The Twilio numbers' agents as last looked up, for the webhook's answer while
    PostgreSQL is away (see :mod:`.outage`)."""
    recording_access: RecordingAccess | None = None
    """The recording store and the opener playback uses; None: made from ``settings`` on
    first use (:func:`.recording_routes.access_of`)."""
    configured_chain: Callable[[], tuple[str, ...] | None] = lambda: None
    """The fallback chain the runtime configuration sets for new calls, read once when a
    call starts (None: each agent's own chain). A call in flight keeps the chain it began
    with. :meth:`.LiveConfig.attach` makes it the live configuration's (``PUT /config``,
    ``DATA_DIR/config.yaml``, ``serve --mode``); :mod:`.call_chain` weighs it against the
    session's, the webhook's and the number's own modes."""
    live_config: LiveConfig | None = None
    """The runtime configuration kept current (:mod:`.live_config`); None: the doors run
    on the agents' chains and the endpoints given at start (tests)."""
    engine_api_key: str | None = None
    """The configuration API's admin key; None: that API answers 503."""
    active_calls: int = 0
    """Call WebSockets open now (phone and browser), refused ones included until they close."""

    @property
    def draining(self) -> bool:
        """Set when the server stops taking calls: /ready answers 503, new calls are refused."""
        return self.admission.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.admission.draining = value
