"""Settings: one frozen object built from environment variables (``COPYWATCH_*``) and defaults."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"COPYWATCH_{name}", default)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know about its surroundings.

    ``home`` is the data folder: the SQLite database, the content-addressed file store, FAISS
    index files, reports and Airflow's own home all live below it unless overridden.
    """

    home: Path
    database_url: str
    embedder: str = "default"
    weights_dir: Path | None = None
    #: Report threshold on the finding score (see docs/MATCHING.md for how it was set).
    threshold: float = 0.4
    user_agent: str = "copywatch/0.1 (+https://example.invalid/copywatch-bot)"
    #: Largest decoded image we accept, in pixels (a decompression-bomb guard).
    max_image_pixels: int = 80_000_000
    #: Days of stored crawls the gallery DAG re-matches after a gallery change.
    rematch_days: int = 7
    #: Whether the daily run screenshots the pages of its findings (``COPYWATCH_SCREENSHOTS=0`` turns it off).
    screenshots: bool = True
    #: A crawl of one target still running after this many seconds is killed (its browser too)
    #: and fails its task, which Airflow retries (``COPYWATCH_CRAWL_TIMEOUT``; 0 means no limit).
    crawl_timeout_s: float = 3 * 3600
    #: Processes that match a run's images against a client's gallery (``COPYWATCH_MATCH_WORKERS``;
    #: 0, the default, means one per core, at most 8).
    match_workers: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def index_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


def load_settings(home: str | Path | None = None) -> Settings:
    """Build settings from the environment; ``home`` overrides ``COPYWATCH_HOME``."""
    home_path = Path(home or _env("HOME", str(Path.cwd() / "data"))).expanduser().resolve()
    db_url = _env("DATABASE_URL", f"sqlite:///{home_path / 'copywatch.db'}")
    weights = _env("WEIGHTS_DIR", str(home_path / "weights"))
    contact = _env("CONTACT_URL", "https://example.invalid/copywatch-bot")
    return Settings(
        home=home_path,
        database_url=db_url,
        embedder=_env("EMBEDDER", "default"),
        weights_dir=Path(weights),
        threshold=float(_env("THRESHOLD", "0.4")),
        user_agent=_env("USER_AGENT", f"copywatch/0.1 (+{contact})"),
        max_image_pixels=int(_env("MAX_IMAGE_PIXELS", "80000000")),
        rematch_days=int(_env("REMATCH_DAYS", "7")),
        screenshots=_flag(_env("SCREENSHOTS", "1")),
        crawl_timeout_s=float(_env("CRAWL_TIMEOUT", str(3 * 3600))),
        match_workers=int(_env("MATCH_WORKERS", "0")),
    )


def _flag(value: str) -> bool:
    """An on/off environment value: ``0``, ``false``, ``no``, ``off`` (any case) or empty mean off."""
    return value.strip().lower() not in ("", "0", "false", "no", "off")
