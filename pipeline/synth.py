"""Synthetic images: Korean text banners, long detail pages (상세페이지) and a copier's transforms."""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in pixels, right and bottom exclusive."""

Colour = tuple[int, int, int]

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/nanum"),
    Path("/usr/share/fonts/truetype"),
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
)
FONT_FILES = {False: "NanumGothic.ttf", True: "NanumGothicBold.ttf"}


class FontNotFoundError(RuntimeError):
    """The Nanum Korean fonts are not installed."""


# ---------------------------------------------------------------------------------------- fonts


@functools.lru_cache(maxsize=4)
def find_font(bold: bool = False) -> Path:
    """Path of NanumGothic (or its bold variant); $COPYWATCH_FONT_DIR is searched first."""
    name = FONT_FILES[bold]
    dirs = list(FONT_DIRS)
    if os.environ.get("COPYWATCH_FONT_DIR"):
        dirs.insert(0, Path(os.environ["COPYWATCH_FONT_DIR"]))
    for folder in dirs:
        direct = folder / name
        if direct.is_file():
            return direct
    for folder in dirs[1:]:
        if folder.is_dir():
            for hit in sorted(folder.rglob(name)):
                return hit
    raise FontNotFoundError(
        f"Korean font {name} not found in {', '.join(str(d) for d in dirs)}; "
        "install it with `sudo apt-get install fonts-nanum` (Debian/Ubuntu) "
        "or point COPYWATCH_FONT_DIR at a folder holding it"
    )


@functools.lru_cache(maxsize=64)
def load_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """NanumGothic at `size` px."""
    return ImageFont.truetype(str(find_font(bold)), size)


# -------------------------------------------------------------------------------------- banners


@dataclass(frozen=True)
class BannerStyle:
    """Look of a text banner."""

    background: Colour = (255, 255, 255)
    foreground: Colour = (40, 40, 40)
    accent: Colour = (200, 60, 60)
    title_size: int = 40
    body_size: int = 24
    align: str = "center"  # "center" or "left"
    padding: int = 40
    line_gap: int = 14
    rule: bool = True  # accent line under the title
    border: bool = False


PALETTE: tuple[tuple[Colour, Colour, Colour], ...] = (
    ((255, 255, 255), (40, 40, 40), (200, 60, 60)),
    ((245, 240, 232), (60, 50, 40), (150, 110, 70)),
    ((30, 30, 35), (240, 240, 240), (230, 190, 90)),
    ((232, 240, 248), (30, 50, 80), (40, 100, 180)),
    ((250, 236, 240), (90, 40, 60), (210, 90, 130)),
    ((238, 246, 236), (40, 70, 40), (80, 150, 80)),
    ((60, 70, 90), (255, 255, 255), (250, 160, 60)),
    ((255, 248, 220), (70, 60, 20), (220, 150, 20)),
)


def random_style(rng: random.Random, *, scale: float = 1.0) -> BannerStyle:
    """A random banner style from the palette; `scale` multiplies the font sizes."""
    background, foreground, accent = rng.choice(PALETTE)
    title = int(rng.randint(32, 52) * scale)
    return BannerStyle(
        background=background,
        foreground=foreground,
        accent=accent,
        title_size=title,
        body_size=max(12, int(title * rng.uniform(0.5, 0.65))),
        align=rng.choice(("center", "center", "left")),
        padding=int(rng.randint(28, 60) * scale),
        line_gap=int(rng.randint(10, 18) * scale),
        rule=rng.random() < 0.7,
        border=rng.random() < 0.25,
    )


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap (falls back to characters for long Korean runs)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}".strip()
        if _text_width(draw, candidate, font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
        while _text_width(draw, current, font) > width and len(current) > 1:
            cut = len(current) - 1
            while cut > 1 and _text_width(draw, current[:cut], font) > width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    return lines


def _layout(width: int, title: str | None, lines: Sequence[str],
            style: BannerStyle) -> tuple[list[tuple[str, ImageFont.FreeTypeFont, int]], int]:
    """Wrapped rows (text, font, size) of a banner and how many of them belong to the title."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    inner = max(40, width - 2 * style.padding)
    rows: list[tuple[str, ImageFont.FreeTypeFont, int]] = []
    if title:
        font = load_font(style.title_size, bold=True)
        rows += [(t, font, style.title_size) for t in _wrap(probe, title, font, inner)]
    title_rows = len(rows)
    body_font = load_font(style.body_size)
    for line in lines:
        rows += [(t, body_font, style.body_size) for t in _wrap(probe, line, body_font, inner)]
    return rows, title_rows


def render_banner(
    width: int,
    lines: Sequence[str],
    style: BannerStyle = BannerStyle(),
    *,
    title: str | None = None,
    min_height: int = 0,
) -> Image.Image:
    """A banner of `width` px: an optional bold title with an accent rule, then body lines."""
    rows, title_rows = _layout(width, title, lines, style)
    rule_space = 26 if (title and style.rule) else 0
    text_height = sum(size + style.line_gap for _, _, size in rows) + rule_space
    height = max(min_height, text_height + 2 * style.padding)
    image = Image.new("RGB", (width, height), style.background)
    draw = ImageDraw.Draw(image)
    y = (height - text_height) // 2
    for index, (text, font, size) in enumerate(rows):
        colour = style.accent if index < title_rows and not style.rule else style.foreground
        x = style.padding if style.align == "left" else (width - _text_width(draw, text, font)) // 2
        draw.text((x, y), text, font=font, fill=colour)
        y += size + style.line_gap
        if index == title_rows - 1 and style.rule:
            rule_x = style.padding if style.align == "left" else width // 2 - 40
            draw.rectangle((rule_x, y + 4, rule_x + 80, y + 8), fill=style.accent)
            y += rule_space
    if style.border:
        draw.rectangle((8, 8, width - 9, height - 9), outline=style.accent, width=3)
    return image


def render_table(
    width: int,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    style: BannerStyle = BannerStyle(),
    *,
    title: str | None = None,
) -> Image.Image:
    """A table (e.g. a size chart) with a shaded header row, optional title above."""
    font = load_font(style.body_size)
    bold = load_font(style.body_size, bold=True)
    row_h = style.body_size + 2 * max(10, style.line_gap)
    title_h = style.title_size + 2 * style.line_gap if title else 0
    table_w = width - 2 * style.padding
    height = 2 * style.padding + title_h + row_h * (len(rows) + 1)
    image = Image.new("RGB", (width, height), style.background)
    draw = ImageDraw.Draw(image)
    if title:
        tfont = load_font(style.title_size, bold=True)
        draw.text(((width - _text_width(draw, title, tfont)) // 2, style.padding), title, font=tfont, fill=style.foreground)
    top = style.padding + title_h
    col_w = table_w / max(1, len(header))
    shade = tuple(int(c * 0.85 + a * 0.15) for c, a in zip(style.background, style.accent))
    draw.rectangle((style.padding, top, style.padding + table_w, top + row_h), fill=shade)
    for r, cells in enumerate([list(header), *[list(row) for row in rows]]):
        y = top + r * row_h
        for c, cell in enumerate(cells):
            cell_font = bold if r == 0 else font
            x = style.padding + c * col_w + (col_w - _text_width(draw, cell, cell_font)) / 2
            draw.text((x, y + (row_h - style.body_size) / 2 - 2), cell, font=cell_font, fill=style.foreground)
        draw.line((style.padding, y + row_h, style.padding + table_w, y + row_h), fill=style.accent, width=1)
    draw.rectangle((style.padding, top, style.padding + table_w, top + row_h * (len(rows) + 1)), outline=style.foreground, width=2)
    return image


# ------------------------------------------------------------------------------------ Korean text

PRODUCT_WORDS = ("후드 티셔츠", "바람막이 자켓", "트레이닝 팬츠", "요가 레깅스", "슬림핏 셔츠", "크롭 탑", "데일리 백팩",
                 "경량 패딩", "러닝 반바지", "니트 가디건", "코튼 맨투맨", "스포츠 브라", "와이드 슬랙스", "숄더백")
ADJECTIVES = ("데일리", "베이직", "프리미엄", "오버핏", "소프트", "시그니처", "에센셜", "클래식", "모던", "스탠다드")
INTRO_LINES = (
    "편안한 착용감과 세련된 디자인을 동시에 담았습니다.",
    "매일 입기 좋은 데일리 아이템으로 추천드려요.",
    "부드러운 원단으로 피부에 닿는 느낌이 좋습니다.",
    "가볍고 통기성이 뛰어난 소재를 사용했습니다.",
    "어떤 코디에도 자연스럽게 어울리는 컬러입니다.",
    "세탁 후에도 변형이 적어 오래 입을 수 있습니다.",
    "꼼꼼한 봉제로 마감하여 내구성이 뛰어납니다.",
    "활동성을 고려한 패턴으로 움직임이 편합니다.",
    "봄, 가을 간절기에 입기 좋은 두께감입니다.",
    "넉넉한 수납공간으로 실용성을 높였습니다.",
    "신축성이 좋아 운동할 때도 불편함이 없습니다.",
    "군더더기 없는 깔끔한 실루엣이 돋보입니다.",
)
SECTION_TITLES = ("POINT {n}", "DETAIL CUT", "디테일 컷", "착용 컷", "COLOR", "소재 안내", "핏 포인트 {n}", "MODEL FIT")
SECTION_LINES = (
    "탄탄한 조직감의 원단", "포인트가 되는 로고 디테일", "여유로운 핏으로 편안하게", "지퍼 마감이 깔끔합니다",
    "밑단 밴딩으로 핏 조절 가능", "모델 키 178cm / 착용 사이즈 L", "모델 키 165cm / 착용 사이즈 M", "흡습속건 기능성 소재",
    "면 60% / 폴리에스터 40%", "나일론 100% 방수 코팅", "손세탁 또는 울 코스 권장",
)
SHIPPING_LINES = (
    "배송비 3,000원 (50,000원 이상 구매 시 무료배송)",
    "배송기간: 결제 완료 후 2~5일 이내 출고 (주말·공휴일 제외)",
    "도서산간 지역은 추가 배송비가 발생할 수 있습니다.",
)
RETURN_LINES = (
    "상품 수령 후 7일 이내 교환·반품 신청이 가능합니다.",
    "고객 변심에 의한 교환·반품 시 왕복 배송비 6,000원이 부과됩니다.",
    "착용 흔적, 세탁, 택 제거 시 교환·반품이 불가합니다.",
    "모니터 환경에 따라 실제 색상과 차이가 있을 수 있습니다.",
)
COPIER_TOP = ("단독 특가 진행중!", "오늘 주문 시 내일 도착", "★ 베스트 상품 ★", "신상품 입고 기념 할인", "전 상품 무료배송 이벤트")
COPIER_BOTTOM = ("구매 전 꼭 확인해주세요", "문의는 고객센터로 연락주세요", "리뷰 작성 시 적립금 지급", "교환·반품은 고객센터 접수 후 가능")


def product_name(rng: random.Random) -> str:
    """A Korean product name such as '프리미엄 후드 티셔츠'."""
    return f"{rng.choice(ADJECTIVES)} {rng.choice(PRODUCT_WORDS)}"


def shipping_notice(width: int, rng: random.Random, *, style: BannerStyle | None = None) -> Image.Image:
    """The boilerplate 배송안내 / 교환·반품 banner many shops put at the bottom of a page."""
    style = style or random_style(rng)
    shipping = render_banner(width, SHIPPING_LINES, style, title="배송안내")
    returns = render_banner(width, RETURN_LINES, style, title="교환·반품 안내")
    return stack([shipping, returns], background=style.background)


def brand_header(width: int, brand: str, rng: random.Random, *, tagline: str | None = None,
                 style: BannerStyle | None = None) -> Image.Image:
    """A brand header banner (brand name, tagline)."""
    style = style or replace(random_style(rng), align="center")
    tagline = tagline or rng.choice(("SINCE 2015", "OFFICIAL STORE", "정품 직영 쇼핑몰", "DAILY WEAR BRAND"))
    return render_banner(width, [tagline], replace(style, title_size=int(style.title_size * 1.4)),
                         title=brand, min_height=180)


def size_chart(width: int, rng: random.Random, *, style: BannerStyle | None = None) -> Image.Image:
    """A 사이즈 표 table with plausible centimetre values."""
    style = style or replace(random_style(rng), align="center")
    header = ["사이즈", "총장", "어깨", "가슴", "소매"]
    base = [rng.randint(62, 70), rng.randint(42, 48), rng.randint(50, 56), rng.randint(58, 62)]
    rows = [[size, *[str(v + 2 * i) for v in base]] for i, size in enumerate(("S", "M", "L", "XL")[: rng.randint(3, 4)])]
    return render_table(width, header, rows, style, title="SIZE GUIDE (cm)")


# ------------------------------------------------------------------------------------- geometry


def stack(images: Sequence[Image.Image], *, background: Colour = (255, 255, 255)) -> Image.Image:
    """Stack images vertically, left-aligned, on a canvas as wide as the widest."""
    width = max(im.width for im in images)
    canvas = Image.new("RGB", (width, sum(im.height for im in images)), background)
    y = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (0, y))
        y += im.height
    return canvas


def fit_width(image: Image.Image, width: int) -> Image.Image:
    """Resize to `width`, keeping the aspect ratio (Lanczos)."""
    height = max(1, round(image.height * width / image.width))
    return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


# ------------------------------------------------------------------------------------ pages


@dataclass(frozen=True)
class PageBlock:
    """One block of a composed page: its kind, its box on the page and its photo id if any."""

    kind: str  # header | intro | heading | photo | detail_cut | size_chart | notice
    box: Box
    source: str | None = None


@dataclass
class DetailPage:
    """A composed long detail image and the blocks it is made of."""

    image: Image.Image
    blocks: list[PageBlock] = field(default_factory=list)


def _photo_block(photo: Image.Image, width: int, rng: random.Random, background: Colour, zoom: bool) -> Image.Image:
    """The photo (or a zoomed 'detail cut' of it) centred on a `width` canvas with a margin."""
    if zoom:
        frac = rng.uniform(0.45, 0.7)
        cw, ch = int(photo.width * frac), int(photo.height * frac)
        x0, y0 = rng.randint(0, photo.width - cw), rng.randint(0, photo.height - ch)
        photo = photo.crop((x0, y0, x0 + cw, y0 + ch))
    margin = rng.choice((0, 0, 30, 60, 100))
    inner = fit_width(photo, width - 2 * margin)
    pad = rng.choice((0, 20, 40))
    canvas = Image.new("RGB", (width, inner.height + 2 * pad), background)
    canvas.paste(inner, (margin, pad))
    return canvas


def compose_detail_page(
    photos: Sequence[Image.Image],
    rng: random.Random,
    *,
    width: int = 860,
    brand: str = "HANBIT",
    name: str | None = None,
    photo_ids: Sequence[str] | None = None,
    header: Image.Image | None = None,
    notice: Image.Image | None = None,
    min_height: int = 3000,
    max_height: int = 12000,
    with_size_chart: bool = True,
) -> DetailPage:
    """A long 상세페이지: brand header, intro text, photo blocks with headings, size chart, notice.

    `header` and `notice` may be pre-rendered boilerplate shared by many pages. Photos are used
    at least once each; zoomed detail cuts are added until the height target is reached.
    """
    if not photos:
        raise ValueError("compose_detail_page needs at least one photo")
    ids = list(photo_ids) if photo_ids is not None else [f"photo{i}" for i in range(len(photos))]
    style = random_style(rng)
    target = rng.randint(min_height, max_height)
    name = name or product_name(rng)
    parts: list[tuple[str, Image.Image, str | None]] = [
        ("header", header if header is not None else brand_header(width, brand, rng), None),
        ("intro", render_banner(width, rng.sample(INTRO_LINES, rng.randint(2, 4)), style, title=name), None),
    ]
    tail: list[tuple[str, Image.Image, str | None]] = []
    if with_size_chart:
        tail.append(("size_chart", size_chart(width, rng), None))
    tail.append(("notice", notice if notice is not None else shipping_notice(width, rng), None))
    used = sum(im.height for _, im, _ in parts + tail)
    order = list(range(len(photos)))
    rng.shuffle(order)
    step = 0
    while step < len(order) or used < target:
        index = order[step % len(order)]
        zoom = step >= len(order)
        if step > 0 and rng.random() < 0.6:
            title = rng.choice(SECTION_TITLES).format(n=step + 1)
            heading = render_banner(width, rng.sample(SECTION_LINES, rng.randint(1, 2)), style, title=title)
            parts.append(("heading", heading, None))
            used += heading.height
        block = _photo_block(photos[index], width, rng, style.background, zoom)
        parts.append(("detail_cut" if zoom else "photo", block, ids[index]))
        used += block.height
        step += 1
        if used > max_height and step >= len(order):
            break
    parts += tail
    image = stack([im for _, im, _ in parts], background=style.background)
    blocks, y = [], 0
    for kind, im, source in parts:
        blocks.append(PageBlock(kind, (0, y, width, y + im.height), source))
        y += im.height
    logger.debug("composed %dx%d page of %d blocks", image.width, image.height, len(blocks))
    return DetailPage(image, blocks)


# --------------------------------------------------------------------------- copier transforms


@dataclass(frozen=True)
class Transformed:
    """An image derived from a source, with the copied region on both.

    `box` is the copied region in the output image; `source_box` the same region in the source
    (None where no axis-aligned correspondence exists); `mirrored` tells whether the copy is
    flipped left-right relative to the source.
    """

    image: Image.Image
    box: Box
    source_box: Box | None
    mirrored: bool = False


def start(image: Image.Image) -> Transformed:
    """The identity copy: the whole source."""
    full = (0, 0, image.width, image.height)
    return Transformed(image.convert("RGB"), full, full)


def _to_source(t: Transformed, x: float, y: float) -> tuple[float, float]:
    """Map an output point inside t.box to source coordinates."""
    assert t.source_box is not None
    l, tp, r, b = t.box
    sl, st, sr, sb = t.source_box
    fx = (x - l) / max(1, r - l)
    fy = (y - tp) / max(1, b - tp)
    if t.mirrored:
        fx = 1.0 - fx
    return sl + fx * (sr - sl), st + fy * (sb - st)


def _round_box(x0: float, y0: float, x1: float, y1: float) -> Box:
    return (round(min(x0, x1)), round(min(y0, y1)), round(max(x0, x1)), round(max(y0, y1)))


def crop(t: Transformed, region: Box) -> Transformed:
    """Crop the output to `region` (output coordinates); both boxes shrink accordingly."""
    l, tp, r, b = region
    il, it, ir, ib = max(l, t.box[0]), max(tp, t.box[1]), min(r, t.box[2]), min(b, t.box[3])
    if ir <= il or ib <= it:
        raise ValueError(f"crop {region} misses the copied region {t.box}")
    source_box = None
    if t.source_box is not None:
        sx0, sy0 = _to_source(t, il, it)
        sx1, sy1 = _to_source(t, ir, ib)
        source_box = _round_box(sx0, sy0, sx1, sy1)
    box = (il - l, it - tp, ir - l, ib - tp)
    return Transformed(t.image.crop(region), box, source_box, t.mirrored)


def vertical_segment(page: Image.Image, rng: random.Random, *, min_height: int = 600,
                     max_height: int = 2500, within: tuple[int, int] | None = None) -> Transformed:
    """A random full-width vertical segment of a page, inside rows `within` (top, bottom) if given."""
    low, high = within if within is not None else (0, page.height)
    height = min(high - low, rng.randint(min_height, max_height))
    top = rng.randint(low, high - height)
    return crop(start(page), (0, top, page.width, top + height))


def resize_width(t: Transformed, width: int) -> Transformed:
    """Resize to `width` px, keeping the aspect ratio."""
    scale = width / t.image.width
    image = fit_width(t.image, width)
    l, tp, r, b = t.box
    box = (round(l * scale), round(tp * scale), min(width, round(r * scale)), min(image.height, round(b * scale)))
    return Transformed(image, box, t.source_box, t.mirrored)


def scale(t: Transformed, factor: float) -> Transformed:
    """Resize by `factor`."""
    return resize_width(t, max(8, round(t.image.width * factor)))


def crop_width(t: Transformed, rng: random.Random, *, min_frac: float = 0.6, max_frac: float = 1.0) -> Transformed:
    """Keep a random 60-100% (by default) horizontal band of the width, full height."""
    keep = max(1, round(t.image.width * rng.uniform(min_frac, max_frac)))
    left = rng.randint(0, t.image.width - keep)
    return crop(t, (left, 0, left + keep, t.image.height))


def crop_area(t: Transformed, rng: random.Random, *, min_frac: float = 0.6, max_frac: float = 0.95) -> Transformed:
    """Keep a random rectangle of 60-95% (by default) of each side."""
    w = max(1, round(t.image.width * rng.uniform(min_frac, max_frac)))
    h = max(1, round(t.image.height * rng.uniform(min_frac, max_frac)))
    left, top = rng.randint(0, t.image.width - w), rng.randint(0, t.image.height - h)
    return crop(t, (left, top, left + w, top + h))


def add_banners(t: Transformed, top: Image.Image | None = None, bottom: Image.Image | None = None) -> Transformed:
    """Put banners above and/or below; banners are resized to the image width."""
    parts = [fit_width(im, t.image.width) for im in (top,) if im is not None]
    offset = sum(im.height for im in parts)
    parts.append(t.image)
    if bottom is not None:
        parts.append(fit_width(bottom, t.image.width))
    l, tp, r, b = t.box
    return Transformed(stack(parts), (l, tp + offset, r, b + offset), t.source_box, t.mirrored)


def copier_banners(width: int, rng: random.Random, shop: str) -> tuple[Image.Image, Image.Image]:
    """A copier's own top and bottom banners in its own style."""
    style = random_style(rng, scale=width / 860)
    top = render_banner(width, [rng.choice(COPIER_TOP)], style, title=shop)
    bottom = render_banner(width, [rng.choice(COPIER_BOTTOM), f"{shop} 고객센터 1588-{rng.randint(1000, 9999)}"],
                           replace(style, rule=False))
    return top, bottom


def watermark(t: Transformed, text: str, rng: random.Random, *, opacity: int | None = None,
              tiled: bool | None = None) -> Transformed:
    """Overlay semi-transparent text: one large mark, or a tiled diagonal pattern."""
    opacity = opacity if opacity is not None else rng.randint(50, 110)
    tiled = tiled if tiled is not None else rng.random() < 0.5
    base = t.image.convert("RGBA")
    size = max(14, base.width // (14 if tiled else 8))
    font = load_font(size, bold=True)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    stamp = Image.new("RGBA", (_text_width(probe, text, font) + 20, size * 2), (0, 0, 0, 0))
    fill = rng.choice(((255, 255, 255), (0, 0, 0), (128, 128, 128)))
    ImageDraw.Draw(stamp).text((10, size // 3), text, font=font, fill=(*fill, opacity))
    stamp = stamp.rotate(rng.choice((0, 20, 30, 45)) if tiled else 0, expand=True, resample=Image.Resampling.BICUBIC)
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    if tiled:
        for y in range(-stamp.height // 2, base.height, stamp.height * 2):
            shift = (y // max(1, stamp.height)) % 2 * stamp.width // 2
            for x in range(-shift, base.width, int(stamp.width * 1.6)):
                overlay.paste(stamp, (x, y), stamp)
    else:
        l, tp, r, b = t.box
        x = rng.randint(l, max(l, r - stamp.width))
        y = rng.randint(tp, max(tp, b - stamp.height))
        overlay.paste(stamp, (x, y), stamp)
    image = Image.alpha_composite(base, overlay).convert("RGB")
    return replace(t, image=image)


def mirror(t: Transformed) -> Transformed:
    """Flip left-right."""
    w = t.image.width
    l, tp, r, b = t.box
    return Transformed(ImageOps.mirror(t.image), (w - r, tp, w - l, b), t.source_box, not t.mirrored)


def rotate(t: Transformed, degrees: float, *, fill: Colour = (255, 255, 255)) -> Transformed:
    """Rotate by a few degrees (canvas expanded); the box becomes the rotated region's bounds."""
    image = t.image.rotate(degrees, expand=True, resample=Image.Resampling.BICUBIC, fillcolor=fill)
    dx, dy = (image.width - t.image.width) / 2, (image.height - t.image.height) / 2
    cx, cy = t.image.width / 2, t.image.height / 2
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    l, tp, r, b = t.box
    xs, ys = [], []
    for x, y in ((l, tp), (r, tp), (l, b), (r, b)):
        xs.append(cx + (x - cx) * cos + (y - cy) * sin + dx)
        ys.append(cy - (x - cx) * sin + (y - cy) * cos + dy)
    box = _round_box(max(0, min(xs)), max(0, min(ys)), min(image.width, max(xs)), min(image.height, max(ys)))
    return Transformed(image, box, t.source_box, t.mirrored)


def colour_jitter(t: Transformed, rng: random.Random, *, strength: float = 0.2) -> Transformed:
    """Random brightness, contrast and saturation changes of up to ±strength."""
    image = t.image
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(1.0 + rng.uniform(-strength, strength))
    return replace(t, image=image)


def jpeg(t: Transformed, quality: int) -> Transformed:
    """Recompress as JPEG at `quality`."""
    return replace(t, image=Image.open(io.BytesIO(jpeg_bytes(t.image, quality))).convert("RGB"))


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """The JPEG encoding of `image` at `quality` (no EXIF, no subsampling options)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def copy_segment(
    page: Image.Image,
    rng: random.Random,
    *,
    shop: str = "copier",
    width: int | None = None,
    width_crop: bool = True,
    banners: bool = True,
    watermark_text: str | None = None,
    quality: int | None = None,
    min_height: int = 600,
    max_height: int = 2500,
    within: tuple[int, int] | None = None,
) -> Transformed:
    """A copier's recomposition of a page part: segment, resize (640-1000 px), width crop,
    own banners above/below, watermark, JPEG recompression."""
    t = vertical_segment(page, rng, min_height=min_height, max_height=max_height, within=within)
    t = resize_width(t, width if width is not None else rng.randint(640, 1000))
    if width_crop:
        t = crop_width(t, rng)
    if banners:
        t = add_banners(t, *copier_banners(t.image.width, rng, shop))
    if watermark_text:
        t = watermark(t, watermark_text, rng)
    return jpeg(t, quality if quality is not None else rng.randint(60, 90))
