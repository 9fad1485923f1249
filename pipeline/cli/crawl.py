"""Crawl commands: ``copywatch extract URL`` shows what a platform adapter extracts from one product page."""
from __future__ import annotations

import argparse
import json
import logging

from pipeline.config import load_settings

log = logging.getLogger(__name__)


def register(sub) -> None:
    from crawler.platforms import PLATFORMS

    p = sub.add_parser(
        "extract", help="fetch one product page and print what copywatch extracts from it",
        description="Fetch one product page (through Chromium when the platform renders with JavaScript, e.g. "
        "Smartstore) and print its platform, title, product images, detail images (page order) and seller identity. "
        "robots.txt is obeyed and Coupang is refused.",
    )
    p.add_argument("url", help="a product page URL")
    p.add_argument("--platform", choices=PLATFORMS, help="the shop's platform (default: detected from the URL and page)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_extract)


def cmd_extract(args: argparse.Namespace) -> int:
    from crawler.extract import extract_url

    try:
        data = extract_url(args.url, load_settings().user_agent, args.platform)
    except (OSError, RuntimeError) as e:  # network errors, HTTP errors, a failed browser load: the command's error
        raise ValueError(f"cannot fetch {args.url}: {e}") from e
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"platform: {data['platform']}")
    print(f"title: {data['title']}")
    for key in ("product_images", "detail_images"):
        print(f"{key}: {len(data[key])}")
        for url in data[key]:
            print(f"  {url}")
    print("seller:")
    for key, value in data["seller"].items():
        print(f"  {key}: {value}")
    if not data["detail_images"]:
        log.warning("no detail images found on %s", args.url)
    return 0
