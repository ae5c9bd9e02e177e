"""Debian's Chromium for the browser tests (FIELD-NOTES.md, "ICE on loopback").

Imported by the test modules (``pythonpath = ["tests"]`` in pyproject.toml). Playwright drives
``/usr/bin/chromium`` through ``executable_path``; ``playwright install`` is never used.
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"

#: Headless on a closed network: no background connections, no QUIC.
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

#: WebRTC on loopback: camera prompts answered, loopback candidates allowed and not hidden.
WEBRTC_ARGS = [
    *BASE_ARGS,
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

#: WebRTC with Chromium's synthetic camera and microphone.
FAKE_DEVICE_ARGS = [*WEBRTC_ARGS, "--use-fake-device-for-media-stream"]
