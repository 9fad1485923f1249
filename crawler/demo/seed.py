"""Set up the demo client, its protected gallery and the demo shops as crawl targets."""
from __future__ import annotations

import logging
from pathlib import Path

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
    finally:
        db.dispose()
    log.info("demo client %s and %d shops are set up", client["slug"], len(manifest["shops"]))
