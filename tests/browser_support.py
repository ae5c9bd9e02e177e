"""Debian's Chromium for the browser tests (FIELD-NOTES.md, "ICE on loopback").

Imported by the test modules (``pythonpath = ["tests"]`` in pyproject.toml). Playwright drives
``/usr/bin/chromium`` through ``executable_path``; ``playwright install`` is never used.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from playwright.async_api import BrowserContext, async_playwright

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


@contextlib.asynccontextmanager
async def chromium(profile: str, args: list[str], **options: Any) -> AsyncIterator[BrowserContext]:
    """Headless Chromium on a fresh profile folder, closed on exit.

    A persistent context, because Playwright's ``launch`` refuses ``--user-data-dir``.
    """
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=args, **options
        )
        try:
            yield context
        finally:
            await context.close()
