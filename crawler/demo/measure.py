"""Measure crawls of the local shops: pages per minute, and bytes of a second (unchanged) crawl over the first.

``python -m crawler.demo.measure [--polite] [--out DIR]``: crawls the demo mall's Cafe24 shops and the platform shops
twice each and prints a JSON report; bytes come from the shops' own request logs (what was sent on the wire).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from crawler.demo.platform_shops import PlatformShops
from crawler.demo.server import DemoMall, RequestRecord
from crawler.platforms import generic
from crawler.run import crawl_url
from pipeline.config import load_settings
from pipeline.db import Database
from pipeline.repo import upsert_run

log = logging.getLogger("crawler.demo.measure")

#: No delay and 8 requests per host: the local shops answer instantly.
FAST = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "CONCURRENT_REQUESTS_PER_DOMAIN": 8}


def _sum(records: list[RequestRecord], shop: str) -> dict[str, int]:
    mine = [r for r in records if r.shop == shop]
    return {"requests": len(mine), "bytes": sum(r.bytes_sent for r in mine),
            "image_requests": sum(1 for r in mine if r.path.startswith(("/web/", "/img/")))}


def measure(out: Path, polite: bool) -> dict[str, Any]:
    settings = load_settings(out / "home")
    extra = {} if polite else FAST
    db = Database(settings.database_url)
    with db.session() as s:
        run_id = upsert_run(s, "measure", datetime(2024, 6, 1, 21), datetime(2024, 6, 2, 21)).id
    db.dispose()
    report: dict[str, Any] = {"settings": "polite defaults" if polite else FAST, "shops": {}}
    with DemoMall(out / "demo-mall") as mall, PlatformShops() as shops:
        rules = out / "generic_shops.yaml"
        rules.write_text(shops.generic_rules(), encoding="utf-8")
        os.environ[generic.CONFIG_ENV] = str(rules)
        starts = {slug: (url + "/", None, mall) for slug, url in mall.base_urls.items()}
        starts.update({p: (url, "smartstore" if p == "smartstore" else None, shops) for p, url in shops.start_urls.items()})
        for shop, (url, platform, server) in starts.items():
            rounds = []
            for _ in range(2):
                server.clear_requests()
                counts = crawl_url(settings, url, run_id=run_id, seen=date(2024, 6, 2), platform=platform, extra_scrapy_settings=extra)
                rounds.append({**_sum(server.requests, shop), "pages": counts["pages"], "images": counts["images"],
                               "pages_unchanged": counts["pages_unchanged"], "elapsed_s": round(counts["elapsed_s"], 2)})
            first, second = rounds
            report["shops"][shop] = {
                "first": first, "second": second,
                "pages_per_min": round(60 * first["pages"] / first["elapsed_s"], 1) if first["elapsed_s"] else None,
                "second_over_first_bytes": round(second["bytes"] / first["bytes"], 4) if first["bytes"] else None,
            }
    total = {k: sum(v[r][k] for v in report["shops"].values() for r in ("first",)) for k in ("pages", "bytes", "elapsed_s")}
    second_bytes = sum(v["second"]["bytes"] for v in report["shops"].values())
    report["total"] = {
        "pages": total["pages"], "elapsed_s": round(total["elapsed_s"], 1),
        "pages_per_min": round(60 * total["pages"] / total["elapsed_s"], 1),
        "first_bytes": total["bytes"], "second_bytes": second_bytes,
        "second_over_first_bytes": round(second_bytes / total["bytes"], 4),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.demo.measure", description=__doc__)
    parser.add_argument("--polite", action="store_true", help="the crawler's default delays and AutoThrottle (slow)")
    parser.add_argument("--out", type=Path, help="work folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out or Path(tempfile.mkdtemp(prefix="copywatch-measure-"))
    sys.stdout.write(json.dumps(measure(out, args.polite), indent=1, ensure_ascii=False) + "\n")  # the command's result
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
