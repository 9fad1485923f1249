"""Run a crawl in a child process (Twisted's reactor starts once per process) and return its counts."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from crawler.platforms import refused_reason
from pipeline.config import Settings
from pipeline.db import CrawlTarget, Database

log = logging.getLogger(__name__)

CRAWLER_DIR = Path(__file__).resolve().parent
REPO_ROOT = CRAWLER_DIR.parent
#: Lines of the crawl log quoted in the error when a crawl fails.
LOG_TAIL_LINES = 40
#: Finish reasons of a crawl that stopped before its end (a partial crawl is not a result).
INTERRUPTED = frozenset({"shutdown", "cancelled"})

#: Keys of the dict returned by :func:`crawl_target` / :func:`crawl_url`, from Scrapy's stats.
_COUNTS = {
    "pages": "copywatch/pages",
    "pages_unchanged": "copywatch/pages_unchanged",
    "images_unchanged": "copywatch/images_unchanged",
    "images_relinked": "copywatch/images_relinked",
    "not_modified": "copywatch/not_modified",
    "images": "copywatch/images",
    "images_bad": "copywatch/images_bad",
    "files_new": "copywatch/files_new",
    "image_bytes": "copywatch/image_bytes",
    "image_failures": "copywatch/image_failures",
    "page_failures": "copywatch/page_failures",
    "bytes_downloaded": "downloader/response_bytes",
    "requests": "downloader/request_count",
    "responses": "downloader/response_count",
    "robots_forbidden": "robotstxt/forbidden",
    "errors": "log_count/ERROR",
}


def crawl_target(
    settings: Settings,
    target_id: int,
    run_id: int,
    seen: date,
    extra_scrapy_settings: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Crawl one ``crawl_targets`` row for a run; return the crawl's counts (see :func:`summarize`).
    With ``timeout_s``, a crawl still running after that many seconds is killed and raises RuntimeError."""
    target = _load_target(settings, target_id)
    args = {
        "target_id": target_id,
        "start_url": target["start_url"],
        "shop": target["name"],
        "platform": target["platform"],
        "max_pages": target["max_pages"],
        "max_depth": target["max_depth"],
        "run_id": run_id,
        "seen": seen.isoformat(),
    }
    return _crawl(settings, args, f"{run_id}-{target_id}", extra_scrapy_settings, timeout_s)


def crawl_url(
    settings: Settings,
    start_url: str,
    *,
    run_id: int | None = None,
    seen: date | None = None,
    shop: str | None = None,
    max_pages: int = 500,
    max_depth: int = 4,
    platform: str | None = None,
    extra_scrapy_settings: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Crawl a shop from a URL without a ``crawl_targets`` row (tests, one-off checks); the platform is detected if not given."""
    args = {"start_url": start_url, "shop": shop, "max_pages": max_pages, "max_depth": max_depth, "run_id": run_id, "platform": platform}
    if seen is not None:
        args["seen"] = seen.isoformat()
    key = f"{run_id if run_id is not None else 'none'}-url-{hashlib.sha256(start_url.encode()).hexdigest()[:12]}"
    return _crawl(settings, args, key, extra_scrapy_settings, timeout_s)


def _load_target(settings: Settings, target_id: int) -> dict[str, Any]:
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            t = s.get(CrawlTarget, target_id)
            if t is None:
                raise LookupError(f"no crawl target with id {target_id}")
            return {"name": t.name, "platform": t.platform, "start_url": t.start_url, "max_pages": t.max_pages, "max_depth": t.max_depth}
    finally:
        db.dispose()


def _crawl(settings: Settings, spider_args: dict[str, Any], key: str, extra: dict[str, Any] | None, timeout_s: float | None = None) -> dict[str, Any]:
    stats_path = settings.home / "crawl-stats" / f"{key}.json"
    log_path = settings.home / "crawl-logs" / f"{key}.log"
    stats_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stats_path.unlink(missing_ok=True)
    scrapy_settings = {**(extra or {}), "COPYWATCH_STATS_FILE": str(stats_path)}
    why = refused_reason(str(spider_args.get("start_url")))
    if why:
        raise ValueError(f"refusing to crawl {spider_args.get('start_url')}: {why}")
    cmd = [sys.executable, "-m", "scrapy", "crawl", "shop", *_args(spider_args), *_settings_args(scrapy_settings)]
    log.info("crawl %s: starting %s", key, spider_args.get("start_url"))
    started = time.monotonic()
    with open(log_path, "wb") as log_file:
        # With a time limit the crawl gets its own process group, so its browser goes with it when it is killed.
        proc = subprocess.Popen(cmd, cwd=CRAWLER_DIR, env=_child_env(settings), stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=timeout_s is not None)
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"crawl {key} of {spider_args.get('start_url')} did not finish within {timeout_s} s and was killed; "
                               f"log {log_path}, last lines:\n{_tail(log_path)}") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    wall_s = time.monotonic() - started
    if returncode != 0 or not stats_path.exists():
        raise RuntimeError(
            f"crawl {key} of {spider_args.get('start_url')} failed (exit code {returncode}); "
            f"log {log_path}, last lines:\n{_tail(log_path)}"
        )
    counts = summarize(json.loads(stats_path.read_text(encoding="utf-8")))
    counts["wall_s"] = round(wall_s, 2)
    if counts["finish_reason"] in INTERRUPTED:
        raise RuntimeError(f"crawl {key} was interrupted ({counts['finish_reason']}): {counts}; log {log_path}:\n{_tail(log_path)}")
    log.info("crawl %s finished (%s): %s", key, counts["finish_reason"], counts)
    return counts


def summarize(stats: dict[str, Any]) -> dict[str, Any]:
    """The counts a caller needs from Scrapy's stats; absent counters are 0."""
    counts: dict[str, Any] = {key: int(stats.get(name, 0) or 0) for key, name in _COUNTS.items()}
    counts["failures"] = counts["image_failures"] + counts["page_failures"]
    counts["finish_reason"] = stats.get("finish_reason", "unknown")
    counts["elapsed_s"] = float(stats.get("elapsed_time_seconds", 0.0) or 0.0)
    return counts


def _args(spider_args: dict[str, Any]) -> list[str]:
    return [part for k, v in spider_args.items() if v is not None for part in ("-a", f"{k}={v}")]


def _settings_args(values: dict[str, Any]) -> list[str]:
    return [part for k, v in values.items() for part in ("-s", f"{k}={v if isinstance(v, str) else json.dumps(v)}")]


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "COPYWATCH_HOME": str(settings.home),
            "COPYWATCH_DATABASE_URL": settings.database_url,
            "COPYWATCH_USER_AGENT": settings.user_agent,
            "COPYWATCH_MAX_IMAGE_PIXELS": str(settings.max_image_pixels),
            "SCRAPY_SETTINGS_MODULE": "crawler.settings",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    return env


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
