"""Set up the demo client, its protected gallery and the demo shops as crawl targets."""
from __future__ import annotations

import logging
from pathlib import Path

from crawler.demo.platform_shops import platform_of_slug, start_path
from pipeline.config import Settings
from pipeline.db import Database
from pipeline.gallery import add_images
from pipeline.repo import upsert_client, upsert_target

log = logging.getLogger(__name__)


def seed_demo(settings: Settings, manifest: dict, demo_dir: Path, base_urls: dict[str, str]) -> None:
    """Idempotent: a second call updates the targets' URLs (the mall's ports change) and adds nothing twice."""
    client = manifest["client"]
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            upsert_client(s, client["slug"], client["name"], "ko")
            add_images(s, settings, client["slug"], [demo_dir / p for p in client["gallery"]])
            for shop in manifest["shops"]:
                upsert_target(s, f"demo-{shop['slug']}", base_urls[shop["slug"]] + "/", "cafe24", max_pages=200, max_depth=4)
            platforms = {slug: platform_of_slug(slug) for slug in base_urls}
            for slug, platform in platforms.items():
                if platform is not None:
                    upsert_target(s, f"demo-{slug}", base_urls[slug] + start_path(platform), platform, max_pages=20, max_depth=2)
    finally:
        db.dispose()
    if "generic-demo" in base_urls:
        write_generic_rules(settings, base_urls["generic-demo"])
    log.info("demo client %s and %d shops are set up", client["slug"], len(manifest["shops"]) + sum(1 for p in platforms.values() if p))


def write_generic_rules(settings: Settings, base_url: str) -> Path:
    """The demo's generic shop rules, where crawls look first (``$COPYWATCH_HOME/generic_shops.yaml``)."""
    from urllib.parse import urlsplit

    from crawler.platforms.generic import HOME_CONFIG, rules_yaml

    path = settings.home / HOME_CONFIG
    path.write_text(rules_yaml(urlsplit(base_url).netloc), encoding="utf-8")
    return path
