"""Scrapy settings: polite defaults, copywatch paths from ``pipeline.config`` and the item pipelines."""
from __future__ import annotations

import json
import os
from pathlib import Path

from crawler.browser import LAUNCH_OPTIONS as _LAUNCH_OPTIONS
from crawler.browser import abort_request as _abort_request
from pipeline.config import load_settings

_REPO_ROOT = Path(__file__).resolve().parent.parent
_COPYWATCH = load_settings(os.environ.get("COPYWATCH_HOME") or _REPO_ROOT / "data")

BOT_NAME = "copywatch"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

# Identify ourselves (with a contact URL) and be polite.
USER_AGENT = _COPYWATCH.user_agent
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 0.5  # randomised by Scrapy's default DOWNLOAD_DELAY_JITTER (±50%)
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_TIMEOUT = 60
RETRY_TIMES = 2
DEPTH_LIMIT = 4
HTTPCACHE_ENABLED = False
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
#: Scrapy 2.19's remote-control server runs code sent to it: never listen on a port here.
REMOTE_CONTROL_ENABLED = False

TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"

# Files: original bytes, stored once by SHA-256 in copywatch's content store.
FILES_STORE = str(_COPYWATCH.store_dir)
MEDIA_ALLOW_REDIRECTS = True
#: Largest response accepted (bytes); larger ones are cancelled and recorded as failures.
DOWNLOAD_MAXSIZE = 64 * 1024 * 1024
#: Largest image accepted (pixels): a decompression-bomb guard when decoding.
COPYWATCH_MAX_IMAGE_PIXELS = _COPYWATCH.max_image_pixels
COPYWATCH_DATABASE_URL = _COPYWATCH.database_url
#: Where the spider writes its final stats as JSON (set per crawl by ``crawler.run``).
COPYWATCH_STATS_FILE = ""

# Chromium (Debian's), only for requests with meta["playwright"]: the spider installs these download
# handlers for platforms that render with JavaScript (Smartstore); other crawls never start a browser.
COPYWATCH_BROWSER_DOWNLOAD_HANDLERS = {
    "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
    "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
}
PLAYWRIGHT_BROWSER_TYPE = "chromium"
PLAYWRIGHT_LAUNCH_OPTIONS = _LAUNCH_OPTIONS
PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT = 30_000
PLAYWRIGHT_MAX_PAGES_PER_CONTEXT = 2
#: The browser renders; it does not download images (the files pipeline does, conditionally).
PLAYWRIGHT_ABORT_REQUEST = _abort_request

#: Conditional requests (If-None-Match / If-Modified-Since) for pages and images already stored.
COPYWATCH_CONDITIONAL_REQUESTS = True
DOWNLOADER_MIDDLEWARES = {"crawler.middlewares.ConditionalRequestsMiddleware": 590}

ITEM_PIPELINES = {
    "crawler.pipelines.OriginalFilesPipeline": 100,
    "crawler.pipelines.StorePipeline": 800,
}


def _env_overrides() -> dict:
    """Scrapy settings from ``COPYWATCH_SCRAPY_SETTINGS`` (a JSON object), e.g. a fast demo crawl:
    ``{"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": false}``. ``-s`` options still win."""
    raw = os.environ.get("COPYWATCH_SCRAPY_SETTINGS", "").strip()
    if not raw:
        return {}
    values = json.loads(raw)
    if not isinstance(values, dict) or not all(isinstance(k, str) and k.isupper() for k in values):
        raise ValueError(f"COPYWATCH_SCRAPY_SETTINGS must be a JSON object of UPPERCASE setting names, got {raw!r}")
    return values


globals().update(_env_overrides())
