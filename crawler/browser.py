"""Chromium through Playwright's sync API: render a page (scrolled to its end) or screenshot it (child processes, CLI)."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator

log = logging.getLogger(__name__)

#: Debian's Chromium and the flags it needs on the build machines (same as the crawl's ``PLAYWRIGHT_LAUNCH_OPTIONS``).
LAUNCH_OPTIONS: dict[str, Any] = {
    "executable_path": os.environ.get("COPYWATCH_CHROMIUM", "/usr/bin/chromium"),
    "headless": True,
    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"],
}
NAVIGATION_TIMEOUT_MS = 30_000
#: Resource types a crawl's browser never downloads: the files pipeline fetches the images the page names.
BLOCKED_RESOURCES = frozenset({"image", "media", "font"})


def abort_request(request: Any) -> bool:
    """``PLAYWRIGHT_ABORT_REQUEST``: skip images, media and fonts while rendering (their URLs stay in the DOM)."""
    return request.resource_type in BLOCKED_RESOURCES


@contextmanager
def browser_page(user_agent: str, *, block_images: bool = False) -> Iterator[Any]:
    """A fresh Chromium page with copywatch's user agent (images not loaded when ``block_images``);
    browser and page are closed on exit, errors included."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(**LAUNCH_OPTIONS)
        try:
            context = browser.new_context(user_agent=user_agent, viewport={"width": 1280, "height": 900})
            if block_images:
                context.route("**/*", lambda route: route.abort() if abort_request(route.request) else route.continue_())
            page = context.new_page()
            page.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
            try:
                yield page
            finally:
                page.close()
                context.close()
        finally:
            browser.close()


def load(page: Any, url: str) -> None:
    """Open ``url``, wait for the network to settle and scroll to the end (lazy images resolve)."""
    from crawler.spiders.shop import SCROLL_JS

    response = page.goto(url, wait_until="load")
    if response is not None and response.status >= 400:
        raise RuntimeError(f"HTTP {response.status} for {url}")
    page.wait_for_load_state("networkidle")
    page.evaluate(SCROLL_JS)


def render(url: str, user_agent: str) -> tuple[str, str]:
    """The final URL and HTML of a page rendered by Chromium (images not downloaded)."""
    with browser_page(user_agent, block_images=True) as page:
        load(page, url)
        return page.url, page.content()
