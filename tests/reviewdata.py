"""Test data for review, report and app tests: two clients, real stored images, findings over two runs."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from pipeline.config import Settings
from pipeline.db import Client, Database, Finding, FindingSighting, GalleryImage, Image, Page, PageImage, Run, Screenshot, Skip
from pipeline.store import ContentStore

HOSTILE_TITLE = '<script>alert("t")</script>=HYPERLINK("http://evil.example")'
HOSTILE_SHOP = "<b>복사몰</b>"
HOSTILE_SELLER = '"><img src=x onerror=alert(2)>'
COPY_URL = "https://copy.example/product/detail.html?product_no=7&cate_no=1"
PARTNER_URL = "https://shop.partner.example/product/detail.html?product_no=3"
BIZ_URL = "https://bizshop.example/goods/goods_view.php?goodsNo=5"
GONE_URL = "https://gone.example/product/detail.html?product_no=9"
OTHER_URL = "https://other-tenant.example/product/detail.html?product_no=4"
BIZ_NUMBER = "220-81-62517"
PASSWORD = "correct horse battery"
DAY1, DAY2 = date(2024, 5, 2), date(2024, 5, 3)


def photo(seed: int, size: tuple[int, int] = (240, 320)) -> PILImage.Image:
    """A textured, photo-like picture that differs per seed (no pure red, which marks outlines)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (1 + seed % 3) + yy) % 160, (yy * 2 + seed * 31) % 220, (xx + yy * (1 + seed % 4)) % 230], -1)
    im = PILImage.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(14):
        x, y = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
        r = int(rng.integers(8, 30))
        colour = tuple(int(c) for c in rng.integers(0, 160, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + r, y + r), fill=colour, outline=(250, 250, 250))
    for i in range(6):
        draw.line((0, int(rng.integers(0, h)), w, int(rng.integers(0, h))), fill=(20 + 30 * i, 240, 20), width=2)
    return im


def png(im: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def stacked(parts: list[PILImage.Image]) -> PILImage.Image:
    """A long detail page made of ``parts`` one under another."""
    out = PILImage.new("RGB", (parts[0].width, sum(p.height for p in parts)), (240, 240, 240))
    y = 0
    for p in parts:
        out.paste(p, (0, y))
        y += p.height
    return out


@dataclass
class World:
    settings: Settings
    db: Database
    run1: int
    run2: int
    findings: dict[str, int] = field(default_factory=dict)
    gallery_images: list[PILImage.Image] = field(default_factory=list)
    screenshot_sha256: str = ""


def build_world(settings: Settings, n_gallery: int = 12) -> World:
    """Clients acme (``n_gallery`` protected photos) and other (3); findings on four acme shops and one other."""
    db = Database(settings.database_url)
    store = ContentStore(settings.store_dir)
    gallery = [photo(100 + i) for i in range(n_gallery)]
    other_gallery = [photo(500 + i) for i in range(3)]
    now = datetime(2024, 5, 3)
    with db.session() as s:
        acme = Client(slug="acme", name="에이크미 <주식회사>", language="ko", threshold=0.5, created_at=now)
        other = Client(slug="other", name="Other Brand", language="en", threshold=0.5, created_at=now)
        s.add_all([acme, other])
        s.flush()

        def gallery_row(client: Client, im: PILImage.Image, label: str) -> GalleryImage:
            sha, _ = store.put(png(im))
            g = GalleryImage(client_id=client.id, sha256=sha, label=label, width=im.width, height=im.height, added_at=now)
            s.add(g)
            s.flush()
            return g

        g_acme = [gallery_row(acme, im, f"acme-{i:02d}.png") for i, im in enumerate(gallery)]
        g_other = [gallery_row(other, im, f"other-{i}.png") for i, im in enumerate(other_gallery)]
        run1 = Run(kind="daily", interval_start=datetime(2024, 5, 1, 21), interval_end=datetime(2024, 5, 1, 21), status="success", started_at=datetime(2024, 5, 1, 21, 5), stats={"crawl": {"pages": 10, "images": 20}})
        run2 = Run(kind="daily", interval_start=datetime(2024, 5, 2, 21), interval_end=datetime(2024, 5, 2, 21), status="success", started_at=datetime(2024, 5, 2, 21, 7), stats={"crawl": {"pages": 12, "images": 25}})
        s.add_all([run1, run2])
        s.flush()

        def suspect(im: PILImage.Image) -> Image:
            sha, _ = store.put(png(im))
            row = Image(sha256=sha, size_bytes=1, width=im.width, height=im.height, status="ok", first_seen=DAY1)
            s.add(row)
            s.flush()
            return row

        def page(url: str, shop: str, run: Run, title: str | None = None, seller: dict | None = None, price: str | None = None) -> Page:
            p = Page(url=url, platform="cafe24", shop=shop, title=title, price=price, seller=seller or {}, first_seen=DAY1, last_seen=DAY2 if run is run2 else DAY1, last_run_id=run.id, content_sha256="ab" * 32)
            s.add(p)
            s.flush()
            return p

        def finding(client: Client, img: Image, g: GalleryImage, p: Page, score: float, runs: list[Run], **kw) -> Finding:
            first, last = runs[0], runs[-1]
            values = dict(
                client_id=client.id, image_id=img.id, gallery_image_id=g.id, page_id=p.id, score=score,
                suspect_box=[0, 320, 240, 640], gallery_box=[0, 0, 240, 320], overlap=0.9, mirrored=False, evidence={"inliers": 55},
                status="new", first_seen=DAY1 if first is run1 else DAY2, last_seen=DAY1 if last is run1 else DAY2,
                first_run_id=first.id, last_run_id=last.id,
            )
            values.update(kw)
            f = Finding(**values)
            s.add(f)
            s.flush()
            for r in runs:
                s.add(FindingSighting(finding_id=f.id, page_id=p.id, run_id=r.id))
            s.add(PageImage(page_id=p.id, image_id=img.id, role="detail", position=img.id, url=p.url.split("/product")[0] + f"/img/{img.id}.png", last_run_id=last.id))
            s.flush()
            return f

        detail = suspect(stacked([photo(900), gallery[0], photo(901)]))
        p_copy = page(COPY_URL, HOSTILE_SHOP, run2, HOSTILE_TITLE, {"company": "도둑상회", "representative": HOSTILE_SELLER, "business_number": "123-45-67890", "email": "=cmd|' /C calc'!A0"}, price="19,900원")
        p_partner = page(PARTNER_URL, "partnershop", run2, "파트너 상품")
        p_biz = page(BIZ_URL, "bizshop", run2, "사업자 상품", {"company": "허가상회", "business_number": BIZ_NUMBER})
        p_gone = page(GONE_URL, "goneshop", run1, "사라진 상품")
        p_other = page(OTHER_URL, "othershop", run2, "Other copy")
        ids = {
            "copy": finding(acme, detail, g_acme[0], p_copy, 0.91, [run2]).id,
            "ongoing": finding(acme, suspect(photo(100).transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)), g_acme[0], p_copy, 0.74, [run1, run2], suspect_box=[0, 0, 240, 320], mirrored=True).id,
            "partner": finding(acme, suspect(photo(101)), g_acme[1], p_partner, 0.88, [run2], suspect_box=[0, 0, 240, 320]).id,
            "biz": finding(acme, suspect(photo(102)), g_acme[2], p_biz, 0.86, [run2], suspect_box=[0, 0, 240, 320]).id,
            "gone": finding(acme, suspect(photo(103)), g_acme[3], p_gone, 0.8, [run1], suspect_box=[0, 0, 240, 320]).id,
            "other": finding(other, detail, g_other[0], p_other, 0.95, [run2]).id,
        }
        shot = PILImage.new("RGB", (1000, 3000), (250, 250, 250))
        ImageDraw.Draw(shot).rectangle((40, 40, 960, 400), fill=(30, 60, 200))
        shot_sha, _ = store.put(png(shot))
        s.add(Screenshot(page_id=p_copy.id, sha256=shot_sha, url=COPY_URL, width=1000, height=3000, captured_at=datetime(2024, 5, 2, 21, 9)))
        s.add(Skip(run_id=run2.id, stage="download", subject="https://broken.example/a.jpg", reason="HTTP 404 <i>gone</i>", created_at=now))
        world = World(settings=settings, db=db, run1=run1.id, run2=run2.id, findings=ids, gallery_images=gallery, screenshot_sha256=shot_sha)
    return world
