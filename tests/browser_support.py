"""Headless Chromium for the browser tests: Debian's `chromium` (installed by `make venv`)
driven by Playwright for Python, which never downloads a browser of its own here. The
flags keep Chromium off the network (this machine's is closed) and out of the sandbox
(tests run as root)."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# GRIDCHAIN_SCREENSHOTS=docs/img refreshes the documentation's screenshots; by default they
# go to a temporary directory, so a test run leaves the work tree as it was.
SCREENSHOTS = Path(os.environ.get("GRIDCHAIN_SCREENSHOTS") or Path(tempfile.gettempdir()) / "gridchain-screenshots")
WAIT_MS = 60_000  # a live update on a loaded 2-core box: a few blocks at most


def require_chromium() -> None:
    """Skip without a browser on a developer's machine; under CI (`make venv` installs both)
    a missing one is a broken install step and fails, so the browser tests can never pass
    there by not running."""
    missing = None if CHROMIUM.exists() else f"Debian's chromium at {CHROMIUM}"
    if missing is None and importlib.util.find_spec("playwright") is None:
        missing = "playwright (requirements-dev.txt)"
    if missing is None:
        return
    message = f"browser tests need {missing}: `make venv` installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def browser_page(width: int = 1280, height: int = 900) -> AsyncIterator[Any]:
    """A fresh page in a fresh headless Chromium; JavaScript errors fail the test."""
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(WAIT_MS)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("response", lambda response: errors.append(f"HTTP {response.status} {response.url}")
                    if response.status >= 400 else None)
            yield page
        finally:
            await browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


async def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


# WCAG 2 relative luminance and contrast ratio of an element's text on its background
# (the nearest ancestor with an opaque one).
CONTRAST_JS = """(selector) => {
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const parse = (c) => c.match(/[\\d.]+/g).map(Number);
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.textContent.trim() || !el.offsetParent) continue;
    let bg = null, node = el;
    while (node && !bg) {
      const c = parse(getComputedStyle(node).backgroundColor);
      if (c.length === 3 || c[3] > 0) bg = c;
      node = node.parentElement;
    }
    bg = bg || [255, 255, 255];
    const fg = parse(getComputedStyle(el).color);
    const [a, b] = [lum(fg.slice(0, 3)), lum(bg.slice(0, 3))].sort((x, y) => y - x);
    out.push({ text: el.textContent.trim().slice(0, 30), ratio: (a + 0.05) / (b + 0.05) });
  }
  return out;
}"""

UNLABELLED_JS = """() => Array.from(document.querySelectorAll("input, select, textarea, button"))
  .filter((el) => el.type !== "hidden")
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
  .filter((el) => !(el.tagName === "BUTTON" && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))"""
