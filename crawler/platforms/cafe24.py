"""Cafe24 adapter: URL classification, listing links and product-page extraction (no network)."""
from __future__ import annotations

import logging
import re
from typing import NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from parsel import Selector, SelectorList
from scrapy.http import Response

log = logging.getLogger(__name__)

PLATFORM = "cafe24"

_SEO_PRODUCT = re.compile(r"^/product/[^/]+/(\d+)(?:/category/\d+/display/\d+)?/?$")
_SEO_CATEGORY = re.compile(r"^/category/[^/]+/(\d+)/?$")
_DETAIL_PATH = "/product/detail.html"
_LIST_PATH = "/product/list.html"

#: Detail-section images in page order (an XPath union keeps document order, no duplicates).
_DETAIL_IMG_CSS = "#prdDetail img, #prdDetailContentLazy img, .edibot-product-detail img"
_PRODUCT_IMG_CSS = ".xans-product-image img"
#: Lazy-loading attributes tried before ``src`` (Cafe24 uses ``ec-data-src``).
_LAZY_ATTRS = ("ec-data-src", "data-src", "data-original")
_TEXT_XPATH = ".//text()[not(ancestor::script) and not(ancestor::style) and not(ancestor::noscript)]"
_SELLER_CSS = ".xans-layout-footer, #footer, footer, .footer"
_SELLER_HEADING_XPATH = (
    "//*[self::h1 or self::h2 or self::h3 or self::h4 or self::strong or self::th or self::span or self::a]"
    "[contains(normalize-space(.), '판매자정보') or contains(normalize-space(.), '판매자 정보')]/.."
)


class ListingLinks(NamedTuple):
    """Links found on a listing page: product pages, and more listing pages (categories, pages)."""

    products: list[str]
    listings: list[str]


# ---------------------------------------------------------------- URLs


def product_no(url: str) -> int | None:
    """The product number of a Cafe24 product URL (either form), else None."""
    parts = urlsplit(url)
    if parts.path == _DETAIL_PATH:
        values = parse_qs(parts.query).get("product_no", [])
        return int(values[0]) if values and values[0].isdigit() else None
    m = _SEO_PRODUCT.match(parts.path)
    return int(m.group(1)) if m else None


def is_product_url(url: str) -> bool:
    """True for ``/product/detail.html?product_no=N`` and ``/product/<name>/<N>/category/...``."""
    return product_no(url) is not None


def canonical_product_url(url: str) -> str:
    """One URL per product: ``<scheme>://<host>/product/detail.html?product_no=N``."""
    number = product_no(url)
    if number is None:
        raise ValueError(f"not a Cafe24 product URL: {url!r}")
    parts = urlsplit(url)
    query = urlencode({"product_no": number})
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), _DETAIL_PATH, query, ""))


def is_listing_url(url: str) -> bool:
    """Category lists (``/product/list.html?cate_no=N``, ``/category/<name>/<N>/``) and the home page."""
    parts = urlsplit(url)
    if parts.path == _LIST_PATH:
        return "cate_no" in parse_qs(parts.query)
    return bool(_SEO_CATEGORY.match(parts.path)) or parts.path in ("", "/", "/index.html")


def _same_host(url: str, host: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host


def _strip_fragment(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(fragment=""))


def listing_links(response: Response) -> ListingLinks:
    """Absolute, same-host product and listing links of a listing page, in page order, deduplicated."""
    host = urlsplit(response.url).netloc.lower()
    products: dict[str, None] = {}
    listings: dict[str, None] = {}
    for href in response.xpath("//a/@href").getall():
        href = href.strip()
        if not href or href.lower().startswith(("javascript:", "mailto:", "tel:")):
            continue
        url = _strip_fragment(response.urljoin(href))
        if not _same_host(url, host):
            continue
        if is_product_url(url):
            products.setdefault(url, None)
        elif is_listing_url(url):
            listings.setdefault(url, None)
    listings.pop(_strip_fragment(response.url), None)
    return ListingLinks(list(products), list(listings))


# ---------------------------------------------------------------- images


def image_url(img: Selector, response: Response) -> str | None:
    """The real URL of an ``<img>``: lazy attribute first, then ``src`` unless a ``data:`` placeholder."""
    for attr in (*_LAZY_ATTRS, "src"):
        value = (img.attrib.get(attr) or "").strip()
        if not value or value.lower().startswith("data:"):
            continue
        url = _strip_fragment(response.urljoin(value))
        if urlsplit(url).scheme in ("http", "https"):
            return url
    return None


def _image_urls(response: Response, css: str) -> list[str]:
    urls: dict[str, None] = {}
    for img in response.css(css):
        url = image_url(img, response)
        if url:
            urls.setdefault(url, None)
    return list(urls)


def product_images(response: Response) -> list[str]:
    """Main product image and gallery (``.xans-product-image img``), absolute, in page order."""
    return _image_urls(response, _PRODUCT_IMG_CSS)


def detail_images(response: Response) -> list[str]:
    """Images of the detail section (``#prdDetail`` and its lazy / Smart Editor variants)."""
    return _image_urls(response, _DETAIL_IMG_CSS)


# ---------------------------------------------------------------- text fields


def _text(sel: Selector) -> str:
    return " ".join(" ".join(sel.xpath(_TEXT_XPATH).getall()).split())


def info_rows(response: Response) -> dict[str, str]:
    """Label -> value of the product info table (``.xans-product-detaildesign tr``)."""
    rows: dict[str, str] = {}
    for tr in response.css(".xans-product-detaildesign tr"):
        label, value = _text(tr.css("th")), _text(tr.css("td"))
        if label and label not in rows:
            rows[label] = value
    return rows


def _row(rows: dict[str, str], label: str) -> str | None:
    for key, value in rows.items():
        if key.replace(" ", "") == label:
            return value or None
    return None


def extract_title(response: Response, rows: dict[str, str]) -> str | None:
    """상품명 from the info table, else ``og:title``, else ``<title>``."""
    title = _row(rows, "상품명")
    if title:
        return title
    for candidate in (response.css('meta[property="og:title"]::attr(content)').get(), response.css("title::text").get()):
        if candidate and candidate.strip():
            return " ".join(candidate.split())
    return None


_MONEY = re.compile(r"(?:\d[\d,]*(?:\.\d+)?\s*원|KRW\s*\d[\d,]*|₩\s*\d[\d,]*)")


def extract_price(response: Response, rows: dict[str, str]) -> str | None:
    """판매가 as shown (e.g. ``29,000원``): the first amount in that row."""
    text = _row(rows, "판매가") or _text_or_none(response.css("#span_product_price_text"))
    if not text:
        return None
    m = _MONEY.search(text)
    return " ".join(m.group(0).split()) if m else text[:64]


def _text_or_none(sels: SelectorList) -> str | None:
    text = " ".join(_text(s) for s in sels)
    return text or None


# ---------------------------------------------------------------- seller identity

_LABELS = {
    "company": r"상호\s*\(\s*법인명\s*\)|상호명|상호|회사명|법인명",
    "representative": r"대표자\s*\(\s*성명\s*\)|대표자명|대표자|대표이사|대표(?!\s*(?:전화|번호|메일|이메일|번))",
    "business_number": r"사업자\s*등록\s*번호|사업자\s*번호",
    "mail_order_number": r"통신판매(?:업)?\s*신고\s*(?:번호)?",
    "email": r"이메일|e-?mail|메일",
    "address": r"사업장\s*(?:주소|소재지)|주소",
}
#: Other footer labels: they end a free-text value but are not extracted.
_OTHER_LABELS = (
    r"전화|대표\s*전화|고객\s*센터|팩스|FAX|TEL|개인정보|호스팅|사업자\s*정보\s*확인|Copyright|COPYRIGHT|ⓒ|©"
    r"|계좌|입금|통신판매업|반품|교환|CS|상담"
)
_SEP = r"[:：]"
_END = r"\||ㅣ|│|·|\[|\]|\n"
_VALUE_PATTERNS = {
    "business_number": re.compile(r"\d{3}\s*-\s*\d{2}\s*-\s*\d{5}"),
    "mail_order_number": re.compile(r"(?:제\s*)?\d{4}\s*-\s*[가-힣A-Za-z0-9]+(?:\s*-\s*[가-힣A-Za-z0-9]+)*(?:\s*호)?"),
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"),
}
_MAX_LEN = {"company": 100, "representative": 60, "address": 200}
_ALL_LABELS = "|".join([*_LABELS.values(), _OTHER_LABELS])
#: A label (possibly followed by a few words, e.g. 개인정보관리책임자) and its separator: ends a value.
_NEXT_LABEL = rf"(?:{_ALL_LABELS})[가-힣A-Za-z ()]{{0,12}}?\s*{_SEP}"
_LABEL_ONLY = re.compile(rf"^(?:{'|'.join(_LABELS.values())})\s*{_SEP}?$", re.IGNORECASE)
_FREE_TEXT = {
    field: re.compile(
        rf"(?:^|[\s|ㅣ│·])(?:{_LABELS[field]})\s*{_SEP}[ \t]*(?P<v>[^\n]+?)[ \t]*(?=(?:{_END})|{_NEXT_LABEL}|$)",
        re.IGNORECASE | re.MULTILINE,
    )
    for field in ("company", "representative", "address")
}


def _free_text(text: str, field: str) -> str | None:
    m = _FREE_TEXT[field].search(text)
    if not m:
        return None
    value = m.group("v").strip(" ,;")
    return value[: _MAX_LEN[field]] or None


def _structured(text: str, field: str) -> str | None:
    labelled = re.compile(rf"(?:{_LABELS[field]})\s*{_SEP}?\s*(?P<v>{_VALUE_PATTERNS[field].pattern})", re.IGNORECASE)
    m = labelled.search(text)
    if m:
        value = " ".join(m.group("v").split())
        return re.sub(r"^제\s*|\s*호$", "", value) if field == "mail_order_number" else value
    if field in ("business_number", "email"):
        m = _VALUE_PATTERNS[field].search(text)
        return " ".join(m.group(0).split()) if m else None
    return None


def parse_seller(text: str) -> dict[str, str]:
    """Seller identity fields found in footer / 판매자정보 text (English keys, missing ones left out)."""
    seller: dict[str, str] = {}
    for field in _LABELS:
        value = _structured(text, field) if field in _VALUE_PATTERNS else _free_text(text, field)
        if value:
            seller[field] = value
    return seller


def _lines(nodes: list[str]) -> list[str]:
    """One line per text node; a label alone in its node (``<th>상호</th>``) is joined to its value."""
    lines: list[str] = []
    pending: str | None = None
    for node in nodes:
        if pending is not None:
            value = node.lstrip(":： ")
            if value:
                lines.append(f"{pending} : {value}")
                pending = None
        elif _LABEL_ONLY.match(node):
            pending = node.rstrip(":： ")
        else:
            lines.append(node)
    if pending is not None:
        lines.append(pending)
    return lines


def seller_text(response: Response) -> str:
    """Text of the 판매자정보 sections and the footer (the page body if none), one line per text node."""
    sections = [*response.xpath(_SELLER_HEADING_XPATH), *response.css(_SELLER_CSS)]
    if not sections:
        sections = response.xpath("//body")
    nodes = [" ".join(t.split()) for section in sections for t in section.xpath(_TEXT_XPATH).getall()]
    return "\n".join(_lines([n for n in nodes if n]))


def extract_seller(response: Response) -> dict[str, str]:
    return parse_seller(seller_text(response))


# ---------------------------------------------------------------- product page


def extract_product(response: Response) -> dict:
    """Everything copywatch keeps from a Cafe24 product page."""
    rows = info_rows(response)
    if not rows:
        log.debug("no product info table (.xans-product-detaildesign) on %s", response.url)
    return {
        "platform": PLATFORM,
        "title": extract_title(response, rows),
        "price": extract_price(response, rows),
        "product_images": product_images(response),
        "detail_images": detail_images(response),
        "seller": extract_seller(response),
    }
