"""Debian's Chromium for the browser tests, driven by Playwright with executable_path
(never a browser download), on a machine whose network ends at loopback."""

from __future__ import annotations

import os
import shutil
from contextlib import asynccontextmanager

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):
    pytest.fail("CI must install Debian's chromium for the browser tests", pytrace=False)

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")

# Without the background-networking flags Chromium keeps trying to reach Google's hosts.
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def chromium(*extra_args: str):
    """A headless Chromium, closed afterwards."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=[*BROWSER_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            await browser.close()
