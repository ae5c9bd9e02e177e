"""Debian's Chromium for the browser tests (FIELD-NOTES.md, "ICE on loopback").

Imported by the test modules (``pythonpath = ["tests"]`` in pyproject.toml). Playwright drives
``/usr/bin/chromium`` through ``executable_path``; ``playwright install`` is never used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def until(
    what: str, probe: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], timeout: float = 25
) -> Any:
    """Poll ``probe`` until ``ok`` holds for its value (logging how long it took); fail with
    the last value seen."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await probe()
        if ok(value):
            logging.getLogger(__name__).info(
                "%s: %.1f s", what, timeout - (deadline - time.monotonic())
            )
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
