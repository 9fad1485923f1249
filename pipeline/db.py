"""Database: SQLAlchemy 2.0 models, engine/session helpers and Alembic migration entry point."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Client(Base):
    """A rights holder whose protected gallery is watched."""

    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(8), default="ko")
    #: Per-client report threshold; None means the configured default.
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    gallery: Mapped[list["GalleryImage"]] = relationship(back_populates="client")


class GalleryImage(Base):
    """A protected image of one client, stored once per client by content hash."""

    __tablename__ = "gallery_images"
    __table_args__ = (UniqueConstraint("client_id", "sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(500))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(DateTime)
    client: Mapped[Client] = relationship(back_populates="gallery")


class CrawlTarget(Base):
    """A shop (start URL) to crawl, with its platform and limits."""

    __tablename__ = "crawl_targets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    platform: Mapped[str] = mapped_column(String(32), default="cafe24")
    start_url: Mapped[str] = mapped_column(Text)
    max_pages: Mapped[int] = mapped_column(Integer, default=500)
    max_depth: Mapped[int] = mapped_column(Integer, default=4)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Run(Base):
    """One pipeline run, keyed by its kind and the start of its data interval."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("kind", "interval_start"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="daily")
    interval_start: Mapped[datetime] = mapped_column(DateTime)
    interval_end: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: Counts per stage, e.g. {"crawl": {"pages": 24, "images": 50}, "embed": {...}}.
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Page(Base):
    """A crawled product page (latest state; first and last seen by run date)."""

    __tablename__ = "pages"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    target_id: Mapped[int | None] = mapped_column(ForeignKey("crawl_targets.id"), nullable=True, index=True)
    platform: Mapped[str] = mapped_column(String(32))
    shop: Mapped[str] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    price: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seller: Mapped[dict[str, Any]] = mapped_column(default=dict)
    etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_modified: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_seen: Mapped[date] = mapped_column(Date)
    last_seen: Mapped[date] = mapped_column(Date)
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)


class Image(Base):
    """A downloaded image file, stored once by SHA-256 (original bytes kept)."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    mime: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: "ok", or "bad" with ``reason`` (corrupt, too large, ...): bad input is data.
    status: Mapped[str] = mapped_column(String(16), default="ok")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_seen: Mapped[date] = mapped_column(Date)


class PageImage(Base):
    """Where an image appears: on which page, in which role, at which position."""

    __tablename__ = "page_images"
    __table_args__ = (UniqueConstraint("page_id", "role", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # "product" | "detail"
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True, index=True)


class Embedding(Base):
    """The tile vectors of one image for one tiling and one embedder (a cache entry)."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("image_sha256", "tiling", "embedder"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    tiling: Mapped[str] = mapped_column(String(100))
    embedder: Mapped[str] = mapped_column(String(100))
    n_tiles: Mapped[int] = mapped_column(Integer)
    #: Path of the .npy vector file, relative to the data folder.
    vectors_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    tiles: Mapped[list["Tile"]] = relationship(back_populates="embedding", order_by="Tile.idx")


class Tile(Base):
    """One tile of an embedded image: its row in the vector file and its box in the original."""

    __tablename__ = "tiles"
    __table_args__ = (UniqueConstraint("embedding_id", "idx"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    embedding_id: Mapped[int] = mapped_column(ForeignKey("embeddings.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    x0: Mapped[int] = mapped_column(Integer)
    y0: Mapped[int] = mapped_column(Integer)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    mirrored: Mapped[bool] = mapped_column(default=False)
    embedding: Mapped[Embedding] = relationship(back_populates="tiles")


class Finding(Base):
    """A likely copy: one per (client, suspect image, protected image), kept across runs."""

    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("client_id", "image_id", "gallery_image_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    gallery_image_id: Mapped[int] = mapped_column(ForeignKey("gallery_images.id"), index=True)
    #: Page where the suspect image was last seen (all sightings are in ``finding_sightings``).
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"))
    score: Mapped[float] = mapped_column(Float)
    #: Matched region on the suspect and on the protected image, [x0, y0, x1, y1] in pixels.
    suspect_box: Mapped[list[Any]] = mapped_column(default=list)
    gallery_box: Mapped[list[Any]] = mapped_column(default=list)
    #: Share of the protected image covered by the matched region (0..1).
    overlap: Mapped[float] = mapped_column(Float, default=0.0)
    mirrored: Mapped[bool] = mapped_column(default=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="new")
    first_seen: Mapped[date] = mapped_column(Date)
    last_seen: Mapped[date] = mapped_column(Date)
    first_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    last_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))


class FindingSighting(Base):
    """A finding seen on a page in a run."""

    __tablename__ = "finding_sightings"
    __table_args__ = (UniqueConstraint("finding_id", "page_id", "run_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"), index=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)


class Skip(Base):
    """Something a run could not process, and why (bad input is data)."""

    __tablename__ = "skips"
    __table_args__ = (UniqueConstraint("run_id", "stage", "subject"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True, index=True)
    stage: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Report(Base):
    """A rendered client report for a run."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("client_id", "run_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    path: Mapped[str] = mapped_column(Text)
    n_findings: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ReviewDecision(Base):
    """One review decision on a finding (append-only audit trail: who, what, when, why)."""

    __tablename__ = "review_decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    #: "confirmed", "dismissed" or "authorised".
    decision: Mapped[str] = mapped_column(String(16))
    previous_status: Mapped[str] = mapped_column(String(16))
    #: The analyst's name, or "allowlist" for an automatic authorisation.
    analyst: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_at: Mapped[datetime] = mapped_column(DateTime)


class AllowlistEntry(Base):
    """A seller a client authorised: by shop domain or by business registration number."""

    __tablename__ = "allowlist_entries"
    __table_args__ = (UniqueConstraint("client_id", "kind", "value"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    #: "domain" or "business_number" (digits only).
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(255))
    added_by: Mapped[str] = mapped_column(String(100))
    added_at: Mapped[datetime] = mapped_column(DateTime)


class Analyst(Base):
    """An analyst account of the review app (scrypt password hash with its own salt)."""

    __tablename__ = "analysts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(128))
    #: scrypt cost parameters, e.g. "scrypt:16384:8:1".
    kdf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AnalystClient(Base):
    """A client an analyst may see and review (tenant access list)."""

    __tablename__ = "analyst_clients"
    __table_args__ = (UniqueConstraint("analyst_id", "client_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    analyst_id: Mapped[int] = mapped_column(ForeignKey("analysts.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)


class ImageFetch(Base):
    """HTTP validators of an image URL and the SHA-256 its bytes had: an unchanged image is not fetched again."""

    __tablename__ = "image_fetches"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_modified: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    fetched_at: Mapped[datetime] = mapped_column(DateTime)


class Screenshot(Base):
    """A full-page screenshot of a product page (evidence), stored content-addressed, with its capture time."""

    __tablename__ = "screenshots"
    __table_args__ = (UniqueConstraint("page_id", "sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    captured_at: Mapped[datetime] = mapped_column(DateTime)
    #: ``pages.content_sha256`` (the crawled HTML) when the shot was taken: a page that changed since is shot again.
    page_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    engine = make_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    engine.dispose()


class Database:
    """An engine plus a session factory, migrated on first use."""

    def __init__(self, url: str, *, migrate_now: bool = True) -> None:
        self.url = url
        if migrate_now:
            migrate(url)
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        s = self._factory()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()
