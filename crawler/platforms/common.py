"""Helpers every platform adapter shares: URLs, image attributes, text, prices and seller identity."""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Collection, Mapping, NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from parsel import Selector, SelectorList
from scrapy.http import Response

log = logging.getLogger(__name__)

#: Lazy-loading attributes tried before ``src`` (Cafe24 uses ``ec-data-src``).
LAZY_ATTRS = ("ec-data-src", "data-src", "data-original", "data-lazy-src", "data-lazy")
_TEXT_XPATH = ".//text()[not(ancestor::script) and not(ancestor::style) and not(ancestor::noscript)]"
#: Footers of the platforms' skins (where 사업자정보 sits).
SELLER_CSS = ".xans-layout-footer, #footer, footer, .footer, #ft, .ft_info, .seller_info, .seller-info"
_SELLER_HEADING_XPATH = (
    "//*[self::h1 or self::h2 or self::h3 or self::h4 or self::strong or self::th or self::span or self::a or self::dt]"
    "[contains(normalize-space(.), '판매자정보') or contains(normalize-space(.), '판매자 정보')"
    " or contains(normalize-space(.), '교환·반품') or contains(normalize-space(.), '교환/반품')]/.."
)


class ListingLinks(NamedTuple):
    """Links found on a listing page: product pages, and more listing pages (categories, pages)."""

    products: list[str]
    listings: list[str]


# ---------------------------------------------------------------- URLs


def same_host(url: str, host: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host


def strip_fragment(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(fragment=""))


def number(value: str) -> int | None:
    """``value`` as a product number when it is one (decimal digits only: ``"1²"`` is not), else None."""
    return int(value) if value.isdecimal() else None


def query_int(url: str, *names: str, ignore_case: bool = True) -> int | None:
    """The first of the query parameters ``names`` (case-insensitive unless ``ignore_case=False``) that holds a number."""
    query = parse_qs(urlsplit(url).query)
    if ignore_case:
        query = {k.lower(): v for k, v in query.items()}
    for name in names:
        values = query.get(name.lower() if ignore_case else name, [])
        value = number(values[0]) if values else None
        if value is not None:
            return value
    return None


# ---------------------------------------------------------------- product URL rules


def query_product_no(
    url: str, paths: Collection[str] | re.Pattern[str], *names: str, path_ignore_case: bool = False, name_ignore_case: bool = True,
) -> int | None:
    """The product number of a URL whose path is one of ``paths`` (or matches the pattern ``paths``), read from
    the first of the query parameters ``names`` that holds one (``/goods/goods_view.php?goodsNo=N``); else None."""
    path = urlsplit(url).path
    if isinstance(paths, re.Pattern):
        on_page = paths.match(path) is not None
    elif path_ignore_case:
        on_page = path.lower() in {p.lower() for p in paths}
    else:
        on_page = path in paths
    return query_int(url, *names, ignore_case=name_ignore_case) if on_page else None


def path_product_no(url: str, pattern: re.Pattern[str], group: int = 1) -> int | None:
    """The product number held by ``group`` of ``pattern`` matched on the URL's path (``/products/<N>``), else None."""
    m = pattern.match(urlsplit(url).path)
    return number(m.group(group)) if m else None


def require_product_no(value: int | None, url: str, platform: str) -> int:
    """``value`` (a URL's product number); when the URL had none, ``ValueError("not <platform> product URL: ...")``
    (``platform`` with its article: ``"a Cafe24"``, ``"an 11st"``)."""
    if value is None:
        raise ValueError(f"not {platform} product URL: {url!r}")
    return value


def canonical_url(url: str, path: str, query: Mapping[str, Any] | str | None = None) -> str:
    """``url`` rebuilt as ``<scheme>://<host><path>?<query>``: scheme and host lower-cased, fragment dropped
    (``query`` a mapping to encode, a query string kept as is, or None for none)."""
    parts = urlsplit(url)
    encoded = query if isinstance(query, str) else urlencode(query or {})
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, encoded, ""))


def on_domain(url: str, *domains: str) -> bool:
    """True when the URL's host is one of ``domains`` or a subdomain of one."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in domains)


def listing_links(response: Response, is_product: Any, is_listing: Any) -> ListingLinks:
    """Absolute, same-host product and listing links of a page, in page order, deduplicated."""
    host = urlsplit(response.url).netloc.lower()
    products: dict[str, None] = {}
    listings: dict[str, None] = {}
    for href in response.xpath("//a/@href").getall():
        href = href.strip()
        if not href or href.lower().startswith(("javascript:", "mailto:", "tel:")):
            continue
        url = strip_fragment(response.urljoin(href))
        if not same_host(url, host):
            continue
        if is_product(url):
            products.setdefault(url, None)
        elif is_listing(url):
            listings.setdefault(url, None)
    listings.pop(strip_fragment(response.url), None)
    return ListingLinks(list(products), list(listings))


# ---------------------------------------------------------------- images


def absolute_image(value: str | None, response: Response) -> str | None:
    """An absolute http(s) URL for an attribute value, or None (empty, ``data:`` placeholder, other scheme)."""
    value = (value or "").strip()
    if not value or value.lower().startswith("data:"):
        return None
    url = strip_fragment(response.urljoin(value))
    return url if urlsplit(url).scheme in ("http", "https") else None


def image_url(img: Selector, response: Response) -> str | None:
    """The real URL of an ``<img>``: lazy attribute first, then ``src`` unless a ``data:`` placeholder."""
    for attr in (*LAZY_ATTRS, "src"):
        url = absolute_image(img.attrib.get(attr), response)
        if url:
            return url
    return None


def image_urls(response: Response, css: str) -> list[str]:
    """Distinct image URLs of the ``<img>`` elements matched by ``css`` (a union keeps page order)."""
    urls: dict[str, None] = {}
    if not css:
        return []
    for img in response.css(css):
        url = image_url(img, response)
        if url:
            urls.setdefault(url, None)
    return list(urls)


def html_image_urls(html: str, response: Response) -> list[str]:
    """Image URLs of an HTML fragment (e.g. detail HTML inside JSON), resolved against the page."""
    urls: dict[str, None] = {}
    for img in Selector(text=html or "<p></p>").css("img"):
        url = image_url(img, response)
        if url:
            urls.setdefault(url, None)
    return list(urls)


# ---------------------------------------------------------------- text fields


def text(sel: Selector | SelectorList) -> str:
    """Visible text of a node, whitespace collapsed (scripts and styles left out)."""
    return " ".join(" ".join(sel.xpath(_TEXT_XPATH).getall()).split())


def text_or_none(sels: SelectorList) -> str | None:
    value = " ".join(text(s) for s in sels)
    return value or None


def first_text(response: Response, css: str) -> str | None:
    """Text of the first node matched by ``css`` that has any."""
    for sel in response.css(css) if css else []:
        value = text(sel)
        if value:
            return value
    return None


def meta_title(response: Response) -> str | None:
    """``og:title``, else ``<title>``."""
    for candidate in (response.css('meta[property="og:title"]::attr(content)').get(), response.css("title::text").get()):
        if candidate and candidate.strip():
            return " ".join(candidate.split())
    return None


MONEY = re.compile(r"(?:\d[\d,]*(?:\.\d+)?\s*원|KRW\s*\d[\d,]*|₩\s*\d[\d,]*)")


def money(value: str | None) -> str | None:
    """The first amount in a text (``29,000원``), else the text itself (truncated), else None."""
    if not value:
        return None
    m = MONEY.search(value)
    return re.sub(r"\s+원$", "원", " ".join(m.group(0).split())) if m else value.strip()[:64] or None


def script_json(response: Response, variable: str) -> Any:
    """The JSON object assigned to ``variable`` in an inline script (``window.X = {...};``), or None."""
    pattern = re.compile(re.escape(variable) + r"\s*=\s*")
    decoder = json.JSONDecoder()
    for script in response.xpath("//script[not(@src)]/text()").getall():
        m = pattern.search(script)
        if not m:
            continue
        try:
            value, _ = decoder.raw_decode(script, m.end())
        except json.JSONDecodeError as e:
            log.warning("%s on %s is not JSON: %s", variable, response.url, e)
            continue
        return value
    return None


def has_script(response: Response, *needles: str) -> bool:
    """True when a ``<script src>`` or ``<link href>`` contains one of ``needles`` (case-insensitive)."""
    sources = " ".join(response.xpath("//script/@src | //link/@href").getall()).lower()
    return any(n.lower() in sources for n in needles)


def meta_content(response: Response, name: str) -> str:
    """Content of ``<meta name=...>`` or ``<meta property=...>`` (lower case, empty if absent)."""
    value = response.xpath(f'//meta[@name="{name}" or @property="{name}"]/@content').get()
    return (value or "").lower()


# ---------------------------------------------------------------- seller identity

_LABELS = {
    "company": r"상호\s*\(\s*법인명\s*\)|상호명|상호|회사명|법인명|COMPANY",
    "representative": r"대표자\s*\(\s*성명\s*\)|대표자명|대표자|대표이사|대표(?!\s*(?:전화|번호|메일|이메일|번))|CEO",
    "business_number": r"사업자\s*등록\s*번호|사업자\s*번호",
    "mail_order_number": r"통신판매(?:업)?\s*신고\s*(?:번호)?",
    "email": r"이메일|e-?mail|메일",
    "address": r"사업장\s*(?:주소|소재지)|주소|ADDRESS",
}
#: Other footer labels: they end a free-text value but are not extracted.
_OTHER_LABELS = (
    r"전화|대표\s*전화|고객\s*센터|팩스|FAX|TEL|개인정보|호스팅|사업자\s*정보\s*확인|Copyright|COPYRIGHT|ⓒ|©"
    r"|계좌|입금|통신판매업|반품|교환|CS|상담"
)
_SEP = r"[:：]"
_END = r"\||ㅣ|│|·|\[|\]|\n|\s/\s"
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


def seller_text(response: Response, extra_css: str = "") -> str:
    """Text of the 판매자정보 / 교환·반품 sections, ``extra_css`` and the footer (the page body if none), one line per text node."""
    css = ", ".join(c for c in (extra_css, SELLER_CSS) if c)
    sections = [*response.xpath(_SELLER_HEADING_XPATH), *response.css(css)]
    if not sections:
        sections = response.xpath("//body")
    nodes = [" ".join(t.split()) for section in sections for t in section.xpath(_TEXT_XPATH).getall()]
    return "\n".join(_lines([n for n in nodes if n]))


def extract_seller(response: Response, extra_css: str = "") -> dict[str, str]:
    """Seller identity of a page (see :func:`parse_seller`)."""
    return parse_seller(seller_text(response, extra_css))



def selector_product(
    response: Response,
    platform: str,
    *,
    title: str | None,
    price: str | None,
    product_images: str | None,
    detail_images: str | None,
    seller: str = "",
) -> dict:
    """The extracted fields of a platform whose pages are read with CSS selectors alone
    (``detail_images=None`` for pages whose detail sits in an iframe, read separately)."""
    return {
        "platform": platform,
        "title": first_text(response, title) or meta_title(response),
        "price": money(first_text(response, price)),
        "product_images": image_urls(response, product_images),
        "detail_images": image_urls(response, detail_images) if detail_images else [],
        "seller": extract_seller(response, seller or ""),
    }


def iframe_url(response: Response, css: str) -> str | None:
    """Absolute URL of the iframe that holds a product's detail, or None."""
    frames = response.css(css)
    return absolute_image(frames.attrib.get("src"), response) if frames else None


def frame_images(response: Response) -> list[str]:
    """Every image of a detail iframe's document, in page order."""
    return image_urls(response, "body img")
