"""The bridge's exceptions, in one tree.

::

    BridgeError
    ├── OfferError                 an SDP offer the bridge cannot answer (carries ``reason``)
    │   └── UnsupportedCodecError  a media section offers none of the supported codecs
    ├── IceCandidateError          a trickled ICE candidate that cannot be used
    └── AiortcInternalsError       the installed aiortc lacks an internal the adapter uses
"""

from __future__ import annotations

__all__ = [
    "AiortcInternalsError",
    "BridgeError",
    "IceCandidateError",
    "OfferError",
    "UnsupportedCodecError",
]


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""


class OfferError(BridgeError):
    """An SDP offer was refused; ``reason`` is the parser's or validator's explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad SDP offer: {reason}")
        self.reason = reason


class UnsupportedCodecError(OfferError):
    """A media section offers no codec the bridge forwards (VP8 video, Opus audio)."""

    def __init__(self, kind: str, mid: str | None, offered: list[str]) -> None:
        offered_text = ", ".join(offered) or "none"
        super().__init__(
            f"the {kind} section (mid {mid}) offers no supported codec "
            f"(offered: {offered_text}); supported are VP8 for video and Opus for audio"
        )
        self.kind = kind
        self.mid = mid
        self.offered = offered


class IceCandidateError(BridgeError):
    """A trickled ICE candidate (RFC 8838) was malformed or came before any offer."""


class AiortcInternalsError(BridgeError):
    """The installed aiortc does not have the private API ``bridge.aiortc_adapter`` uses."""
