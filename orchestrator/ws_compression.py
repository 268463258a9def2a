"""No permessage-deflate on the call WebSockets: base64 audio does not compress.

Every WebSocket the server accepts carries a call: JSON around base64 audio
(Twilio Media Streams, the browser protocol, OpenAI Realtime events). Base64
of G.711 or PCM16 is close to random text, so RFC 7692's permessage-deflate
saves a few bytes of JSON keys and costs a zlib round per message in each
direction. Hypercorn accepts the extension whenever a client offers it, with
no setting to refuse it (``hypercorn.protocol.ws_stream.Handshake.accept``
builds a ``wsproto`` ``PerMessageDeflate`` for every handshake), so
:func:`refuse_permessage_deflate` swaps in an extension of the same name
that declines every offer (RFC 7692 section 5: a server may decline by not
answering the offer); the connection then runs uncompressed. The provider
leg is uncompressed already: trio-websocket's client never offers it.
"""

from __future__ import annotations

from hypercorn.protocol import ws_stream
from wsproto.extensions import PerMessageDeflate

__all__ = ["refuse_permessage_deflate"]


class _DeclinedPerMessageDeflate(PerMessageDeflate):
    """permessage-deflate, declined: never enabled, so frames pass through untouched."""

    def accept(self, offer: str) -> None:
        return None


def refuse_permessage_deflate() -> None:
    """Make hypercorn decline permessage-deflate on every WebSocket of this process.

    Idempotent; call it before serving.
    """
    ws_stream.PerMessageDeflate = _DeclinedPerMessageDeflate  # type: ignore[attr-defined]
