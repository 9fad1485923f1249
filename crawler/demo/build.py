"""Build the demo mall's files: a client's protected gallery and two Cafe24-style shops with planted copies."""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline import synth

logger = logging.getLogger(__name__)

VERSION = "2"
SEED = 20240601
PUBLISHED = "2024-06-01T00:00:00Z"  # Last-Modified of every served file and page
PHOTO_DIR = Path(__file__).resolve().parent / "photos" / "magento-luma"
PAGE_WIDTH = 860
PAGE_HEIGHTS = (3000, 6500)
PRODUCTS_PER_SHOP = 14
UPLOAD_DAY = "20240601"

CLIENT = {"slug": "hanbit", "name": "한빛어패럴", "brand": "HANBIT"}

#: The client's protected product photos (two colour-variant pairs among them).
GALLERY_PHOTOS = (
    "mh01-gray_main", "mh01-orange_main", "wj08-gray_main", "wj08-purple_main",
    "mj01-yellow_main", "wb04-blue_main", "ws03-red_main", "mb02-blue-0",
)
#: The client's three long detail pages: (file stem, product name, photos on the page).
GALLERY_PAGES = (
    ("hanbit-detail-1", "시그니처 후드 티셔츠", ("mh01-gray_main", "mh01-gray_back", "mh01-orange_main")),
    ("hanbit-detail-2", "베이직 바람막이 자켓", ("wj08-gray_main", "wj08-gray_back", "wj08-purple_main")),
    ("hanbit-detail-3", "에센셜 트레이닝 자켓", ("mj01-yellow_main", "mj01-yellow_back", "ws03-red_back")),
)
#: Photos the client does not own; colour variants of gallery styles come first (hard negatives).
UNRELATED_PHOTOS = (
    "mh01-black_main", "wj08-orange_main", "mj01-red_main", "wb04-purple_main", "ws03-blue_main",
    "mb02-gray-0", "mh05-white_main", "wh04-blue_main", "msh05-gray_main", "mg01-bk-0",
    "luma-yoga-brick", "luma-stability-ball", "mt01-gray_main", "wt01-blue_main", "mp01-black_main",
    "mh05-white_back", "wh04-blue_back", "msh05-gray_back",
)


@dataclass(frozen=True)
class ShopSpec:
    """A demo shop: identity, categories and its first product number."""

    slug: str
    name: str
    brand: str
    seller: dict[str, str]
    categories: tuple[tuple[int, str], tuple[int, str]]
    first_product_no: int
    photo_offset: int


SHOPS = (
    ShopSpec(
        slug="mall-a", name="데일리핏", brand="DAILYFIT",
        seller={"상호": "데일리핏", "대표자": "김민준", "사업자등록번호": "123-45-67890",
                "통신판매업신고": "제2024-서울마포-0123호", "이메일": "help@dailyfit.example",
                "주소": "서울특별시 마포구 월드컵북로 12, 3층", "전화": "02-1234-5678"},
        categories=((24, "아우터"), (25, "상의")), first_product_no=101, photo_offset=0,
    ),
    ShopSpec(
        slug="mall-b", name="스타일온", brand="STYLE ON",
        seller={"상호": "(주)스타일온", "대표자": "이서연", "사업자등록번호": "214-86-13579",
                "통신판매업신고": "제2023-경기성남-0456호", "이메일": "cs@styleon.example",
                "주소": "경기도 성남시 분당구 판교역로 45, 7층", "전화": "031-987-6543"},
        categories=((42, "트레이닝"), (43, "가방·잡화")), first_product_no=201, photo_offset=9,
    ),
)


@dataclass(frozen=True)
class Plant:
    """A planted copy: which shop slot copies which gallery item, and how."""

    shop: str
    slot: int
    kind: str  # whole_detail | detail_segment | mirrored_watermarked
    gallery: str  # gallery stem
    width: int | None = None


PLANTS = (
    Plant("mall-a", 2, "whole_detail", "hanbit-detail-1"),
    Plant("mall-a", 6, "detail_segment", "hanbit-detail-3", width=700),
    Plant("mall-a", 9, "mirrored_watermarked", "wj08-purple_main"),
    Plant("mall-b", 1, "whole_detail", "hanbit-detail-2"),
    Plant("mall-b", 5, "detail_segment", "hanbit-detail-1", width=760),
    Plant("mall-b", 10, "mirrored_watermarked", "mh01-gray_main"),
)
#: (shop, slot) -> defect; never a planted slot.
DEFECTS = {("mall-a", 4): "missing_image", ("mall-b", 12): "corrupt_image"}
HOSTILE_TITLE = "<script>alert(1)</script> 시그니처 후드 & \"특가\" '한정판'"
HOSTILE_SLOT = ("mall-b", 1)
EC_SRC_FORMS = ("protocol_relative", "root_relative", "absolute")


def rng_for(*key: object) -> random.Random:
    """A generator seeded by the build seed and a key, independent of generation order."""
    return random.Random(f"{SEED}:" + ":".join(str(k) for k in key))


def load_photo(stem: str) -> Image.Image:
    """A demo photo as RGB."""
    with Image.open(PHOTO_DIR / f"{stem}.jpg") as image:
        return image.convert("RGB")


def save_jpeg(image: Image.Image, path: Path, quality: int) -> None:
    """Write `image` as a JPEG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(synth.jpeg_bytes(image, quality))


def box_list(box: synth.Box | None) -> list[int] | None:
    """A box as a JSON list."""
    return list(box) if box is not None else None


# ------------------------------------------------------------------------------------- gallery


def build_gallery(out_dir: Path) -> tuple[dict[str, Path], dict[str, synth.DetailPage]]:
    """Write the client's gallery; return gallery stem -> file and page stem -> composed page."""
    gallery_dir = out_dir / "gallery"
    files: dict[str, Path] = {}
    for stem in GALLERY_PHOTOS:
        target = gallery_dir / "photos" / f"{stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PHOTO_DIR / f"{stem}.jpg", target)
        files[stem] = target
    header = synth.brand_header(PAGE_WIDTH, CLIENT["brand"], rng_for("client", "header"), tagline=CLIENT["name"])
    notice = synth.shipping_notice(PAGE_WIDTH, rng_for("client", "notice"))
    pages: dict[str, synth.DetailPage] = {}
    for stem, name, photo_stems in GALLERY_PAGES:
        page = synth.compose_detail_page(
            [load_photo(s) for s in photo_stems], rng_for("client", stem), width=PAGE_WIDTH,
            brand=CLIENT["brand"], name=name, photo_ids=photo_stems, header=header, notice=notice,
            min_height=PAGE_HEIGHTS[0], max_height=PAGE_HEIGHTS[1],
        )
        target = gallery_dir / "details" / f"{stem}.jpg"
        save_jpeg(page.image, target, 90)
        files[stem] = target
        pages[stem] = page
    return files, pages


# --------------------------------------------------------------------------------------- shops


class ShopWriter:
    """Writes one shop's images under `out_dir/shops/<slug>/web/...` and returns manifest rows."""

    def __init__(self, out_dir: Path, spec: ShopSpec, gallery: dict[str, Path],
                 pages: dict[str, synth.DetailPage]) -> None:
        self.out_dir = out_dir
        self.spec = spec
        self.root = out_dir / "shops" / spec.slug
        self.gallery = gallery
        self.pages = pages
        self.header = synth.brand_header(PAGE_WIDTH, spec.brand, rng_for(spec.slug, "header"), tagline=spec.name)
        self.notice = synth.shipping_notice(PAGE_WIDTH, rng_for(spec.slug, "notice"))
        self.planted: list[dict[str, Any]] = []
        self.titles: set[str] = set()

    def rel(self, path: Path) -> str:
        """`path` relative to the build folder, with forward slashes."""
        return path.relative_to(self.out_dir).as_posix()

    def main_path(self, product_no: int) -> Path:
        return self.root / "web" / "product" / "big" / "202406" / f"{product_no}_shop1_main.jpg"

    def detail_path(self, product_no: int, part: int) -> Path:
        return self.root / "web" / "upload" / "NNEditor" / UPLOAD_DAY / f"{product_no:04d}_{part}_detail.jpg"

    def build(self) -> list[dict[str, Any]]:
        """Write every product's images; return the product rows."""
        plants = {p.slot: p for p in PLANTS if p.shop == self.spec.slug}
        return [self.product(slot, plants.get(slot)) for slot in range(PRODUCTS_PER_SHOP)]

    def product(self, slot: int, plant: Plant | None) -> dict[str, Any]:
        """One product: its row, with its main and detail images written."""
        rng = rng_for(self.spec.slug, "product", slot)
        product_no = self.spec.first_product_no + slot
        cate_no = self.spec.categories[slot % 2][0]
        title = self.unique_title(rng)
        if (self.spec.slug, slot) == HOSTILE_SLOT:
            title = HOSTILE_TITLE
        row: dict[str, Any] = {
            "product_no": product_no, "cate_no": cate_no, "title": title,
            "price": rng.randrange(19000, 129000, 1000),
            "ec_src_form": EC_SRC_FORMS[slot % 3],
            "seo_link": slot % 4 == 1 and (self.spec.slug, slot) != HOSTILE_SLOT,
        }
        own = self.own_photos(slot)
        if plant is not None and plant.kind == "mirrored_watermarked":
            row["main_image"] = self.plant_mirrored(plant, product_no, rng)
        else:
            save_jpeg(own[0], self.main_path(product_no), 88)
            row["main_image"] = self.rel(self.main_path(product_no))
        if plant is not None and plant.kind != "mirrored_watermarked":
            row["detail_images"] = self.plant_detail(plant, product_no, rng)
        else:
            row["detail_images"] = self.own_details(slot, product_no, own, title, rng)
        defect = DEFECTS.get((self.spec.slug, slot))
        if defect:
            self.apply_defect(defect, row)
        return row

    def unique_title(self, rng: random.Random) -> str:
        """A product name not used yet in this shop."""
        title = synth.product_name(rng)
        while title in self.titles:
            title = synth.product_name(rng)
        self.titles.add(title)
        return title

    def own_photos(self, slot: int) -> list[Image.Image]:
        """The shop's own (non-gallery) photos for a slot: a main photo and a second one."""
        n = len(UNRELATED_PHOTOS)
        first = UNRELATED_PHOTOS[(slot + self.spec.photo_offset) % n]
        second = UNRELATED_PHOTOS[(slot + self.spec.photo_offset + 7) % n]
        return [load_photo(first), load_photo(second)]

    def own_details(self, slot: int, product_no: int, photos: list[Image.Image], title: str,
                    rng: random.Random) -> list[str]:
        """The shop's own detail page for a product, split in two images for some products."""
        page = synth.compose_detail_page(
            photos, rng, width=PAGE_WIDTH, brand=self.spec.brand, name=title, header=self.header,
            notice=self.notice, min_height=PAGE_HEIGHTS[0], max_height=PAGE_HEIGHTS[1],
        )
        parts = [page.image]
        if slot % 5 == 0:
            cut = page.image.height // 2
            parts = [page.image.crop((0, 0, PAGE_WIDTH, cut)), page.image.crop((0, cut, PAGE_WIDTH, page.image.height))]
        paths = []
        for index, part in enumerate(parts, start=1):
            save_jpeg(part, self.detail_path(product_no, index), 85)
            paths.append(self.rel(self.detail_path(product_no, index)))
        return paths

    def record(self, plant: Plant, product_no: int, role: str, path: Path, copy: synth.Transformed) -> None:
        """Add a planted copy to the manifest rows."""
        self.planted.append({
            "shop": self.spec.slug, "product_no": product_no, "role": role, "image": self.rel(path),
            "gallery": self.rel(self.gallery[plant.gallery]), "kind": plant.kind,
            "box": box_list(copy.box), "gallery_box": box_list(copy.source_box), "mirrored": copy.mirrored,
        })

    def plant_mirrored(self, plant: Plant, product_no: int, rng: random.Random) -> str:
        """A gallery photo, mirrored and watermarked with the shop's name, as the main image."""
        with Image.open(self.gallery[plant.gallery]) as source:
            copy = synth.mirror(synth.start(source))
        copy = synth.jpeg(synth.watermark(copy, self.spec.brand, rng, opacity=90, tiled=True), 85)
        path = self.main_path(product_no)
        save_jpeg(copy.image, path, 92)
        self.record(plant, product_no, "product", path, copy)
        return self.rel(path)

    def plant_detail(self, plant: Plant, product_no: int, rng: random.Random) -> list[str]:
        """A whole gallery detail image recompressed, or a segment of one resized with banners."""
        if plant.kind == "whole_detail":
            with Image.open(self.gallery[plant.gallery]) as source:
                copy = synth.start(source)
            quality = 72
        else:
            copy = self.segment(self.pages[plant.gallery], plant, rng)
            quality = 82
        path = self.detail_path(product_no, 1)
        save_jpeg(copy.image, path, quality)
        self.record(plant, product_no, "detail", path, copy)
        return [self.rel(path)]

    def segment(self, page: synth.DetailPage, plant: Plant, rng: random.Random) -> synth.Transformed:
        """A vertical segment around one photo block, resized to the plant's width, with banners."""
        photos = [b for b in page.blocks if b.kind == "photo"]
        block = photos[rng.randrange(len(photos))]
        top = max(0, block.box[1] - rng.randint(0, 250))
        bottom = min(page.image.height, block.box[3] + rng.randint(0, 250))
        copy = synth.crop(synth.start(page.image), (0, top, page.image.width, bottom))
        copy = synth.resize_width(copy, plant.width or 700)
        return synth.add_banners(copy, *synth.copier_banners(copy.image.width, rng, self.spec.name))

    def apply_defect(self, defect: str, row: dict[str, Any]) -> None:
        """Make the first detail image missing (404) or corrupt (not an image)."""
        path = self.out_dir / row["detail_images"][0]
        if defect == "missing_image":
            path.unlink()
        else:
            path.write_bytes(b"this is not a JPEG image\x00\xff\xd8" * 20)
        row["defect"] = defect


# ------------------------------------------------------------------------------------ manifest


def shop_row(spec: ShopSpec, products: list[dict[str, Any]]) -> dict[str, Any]:
    """A shop's manifest entry."""
    return {
        "slug": spec.slug, "name": spec.name, "brand": spec.brand, "seller": dict(spec.seller),
        "categories": [{"cate_no": no, "name": name} for no, name in spec.categories],
        "products": products,
    }


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The existing manifest, or None when absent."""
    path = out_dir / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def build_demo(out_dir: Path) -> dict[str, Any]:
    """Generate the demo (gallery, shops, manifest.json) into `out_dir`; reuse an up-to-date build."""
    out_dir = Path(out_dir)
    existing = read_manifest(out_dir)
    if existing is not None and existing.get("version") == VERSION:
        logger.debug("demo mall in %s is up to date (version %s)", out_dir, VERSION)
        return existing
    started = time.perf_counter()
    for stale in ("gallery", "shops"):
        if (out_dir / stale).exists():
            shutil.rmtree(out_dir / stale)
    gallery, pages = build_gallery(out_dir)
    shops, planted = [], []
    for spec in SHOPS:
        writer = ShopWriter(out_dir, spec, gallery, pages)
        shops.append(shop_row(spec, writer.build()))
        planted += writer.planted
    manifest = {
        "version": VERSION,
        "published": PUBLISHED,
        "client": {"slug": CLIENT["slug"], "name": CLIENT["name"],
                   "gallery": sorted(p.relative_to(out_dir).as_posix() for p in gallery.values())},
        "shops": shops,
        "planted": planted,
    }
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(out_dir / "manifest.json")
    logger.info("built demo mall in %s in %.1f s", out_dir, time.perf_counter() - started)
    return manifest


def served_path(relative: str) -> str:
    """The URL path under which a shop serves a manifest file path ('shops/<slug>/web/..' -> '/web/..')."""
    parts = relative.split("/", 2)
    if len(parts) < 3 or parts[0] != "shops":
        raise ValueError(f"{relative!r} is not a shop file")
    return "/" + parts[2]
