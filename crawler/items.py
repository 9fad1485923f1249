"""Items: what the spider extracts (dataclasses) and what the files pipeline adds to them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

Role = Literal["product", "detail"]


@dataclass
class ImageRef:
    """An image on a page: absolute URL, role and position within that role (page order)."""

    url: str
    role: Role
    position: int


@dataclass
class FileResult:
    """Outcome of one image download: the stored SHA-256, or why there is none."""

    url: str
    ok: bool
    sha256: str | None = None
    size: int = 0
    mime: str | None = None
    reason: str | None = None
    #: The server's validators for the URL (kept for the next crawl's conditional request).
    etag: str | None = None
    last_modified: str | None = None
    #: True when the server answered 304: the stored bytes (``sha256``) are still current.
    unchanged: bool = False


@dataclass
class ProductPageItem:
    """A product page: canonical URL, shop, text fields, seller identity and its images.

    ``file_urls`` (distinct image URLs, filled from ``images``) and ``files`` (one
    :class:`FileResult` per URL) are the fields the files pipeline reads and writes.
    """

    url: str
    shop: str
    platform: str
    title: str | None
    price: str | None
    seller: dict[str, str]
    images: list[ImageRef]
    target_id: int | None
    run_id: int | None
    seen: date
    fetched_url: str = ""
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: str | None = None
    file_urls: list[str] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.file_urls:
            self.file_urls = list(dict.fromkeys(ref.url for ref in self.images))


@dataclass
class PageFailureItem:
    """A page that could not be fetched (HTTP error, robots.txt, network): recorded as a skip."""

    url: str
    reason: str
    shop: str
    target_id: int | None
    run_id: int | None
    seen: date


@dataclass
class PageUnchangedItem:
    """A product page the server answered 304 Not Modified: its stored images are linked to this run again."""

    url: str
    shop: str
    target_id: int | None
    run_id: int | None
    seen: date
