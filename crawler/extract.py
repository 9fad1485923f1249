"""Fetch one product page (with Chromium when its platform needs it) and return what its adapter extracts."""
from __future__ import annotations

import logging
import urllib.request
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit, urlunsplit

from protego import Protego
from scrapy.http import HtmlResponse

from crawler import platforms
from crawler.browser import render

log = logging.getLogger(__name__)

TIMEOUT_S = 30
#: Largest page accepted (bytes).
MAX_BYTES = 16 * 1024 * 1024
#: The keys ``copywatch extract`` prints.
KEYS = ("platform", "title", "product_images", "detail_images", "seller")


class Forbidden(ValueError):
    """The URL may not be fetched (a refused host, or robots.txt)."""


def _get(url: str, user_agent: str) -> tuple[str, bytes, str | None]:
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept-Language": "ko,en;q=0.5"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310 (http(s) checked by the caller)
        body = answer.read(MAX_BYTES + 1)
        if len(body) > MAX_BYTES:
            raise ValueError(f"{url}: page larger than {MAX_BYTES} bytes")
        return answer.geturl(), body, answer.headers.get_content_charset()


def check_robots(url: str, user_agent: str) -> None:
    """Raise :class:`Forbidden` when the site's robots.txt disallows ``url`` for our agent (a missing robots.txt allows all)."""
    parts = urlsplit(url)
    robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
    try:
        _, body, _ = _get(robots_url, user_agent)
    except HTTPError as e:
        if 400 <= e.code < 500:
            return
        raise
    if not Protego.parse(body.decode("utf-8", errors="replace")).can_fetch(url, user_agent):
        raise Forbidden(f"{url} is disallowed by {robots_url}")


def fetch(url: str, user_agent: str, *, browser: bool) -> HtmlResponse:
    """The page as a Scrapy response: plain HTTP, or rendered and scrolled by Chromium."""
    if browser:
        final_url, html = render(url, user_agent)
        return HtmlResponse(url=final_url, body=html.encode("utf-8"), encoding="utf-8")
    final_url, body, charset = _get(url, user_agent)
    return HtmlResponse(url=final_url, body=body, encoding=charset or "utf-8")


def extract_url(url: str, user_agent: str, platform: str | None = None) -> dict[str, Any]:
    """What the platform adapter extracts from one product page (platform detected when not given)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http(s) URL")
    why = platforms.refused_reason(url)
    if why:
        raise Forbidden(f"refusing to fetch {url}: {why}")
    check_robots(url, user_agent)
    platform = platform or platforms.detect(url)
    needs_browser = platform is not None and platforms.adapter(platform).NEEDS_BROWSER
    response = fetch(url, user_agent, browser=needs_browser)
    if platform is None:
        platform = platforms.detect(response.url, response)
        if platform is None:
            raise ValueError(f"cannot tell the platform of {url}: give one with --platform")
        if platforms.adapter(platform).NEEDS_BROWSER:
            response = fetch(url, user_agent, browser=True)
    adapter = platforms.adapter(platform)
    blocked = getattr(adapter, "blocked_reason", None)
    reason = blocked(response) if blocked else None
    if reason:
        raise ValueError(f"{url}: {reason}")
    data = adapter.extract_product(response)
    frame = getattr(adapter, "iframe_url", None)
    frame_url = frame(response) if frame else None
    if frame_url:
        check_robots(frame_url, user_agent)
        data["detail_images"] = adapter.frame_detail_images(fetch(frame_url, user_agent, browser=False))
    return {key: data[key] for key in KEYS}
