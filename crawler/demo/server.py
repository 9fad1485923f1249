"""Serve the demo shops over HTTP on 127.0.0.1 with Cafe24-style markup, one server per shop."""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

from crawler.demo.build import build_demo, served_path

logger = logging.getLogger(__name__)

PER_PAGE = 5
PLACEHOLDER_GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
ROBOTS_TXT = "User-agent: *\nDisallow: /myshop/\nDisallow: /order/\nDisallow: /member/\nAllow: /\n"
SEO_PATH = re.compile(r"^/product/[^/]+/(\d+)/category/(\d+)/display/(\d+)/?$")
PRIVATE_PAGES = {
    "/myshop/index.html": "마이쇼핑",
    "/member/login.html": "로그인",
    "/order/basket.html": "장바구니",
}


class RequestRecord(NamedTuple):
    """One answered request, for tests."""

    shop: str
    method: str
    path: str
    status: int
    bytes_sent: int


@dataclass
class Response:
    """What a shop answers: status, headers and body."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- markup


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def page_html(shop: dict[str, Any], title: str, body: str, *, head_extra: str = "") -> str:
    """A whole page: head, Cafe24 top menu, `body`, footer with the seller information."""
    return f"""<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="utf-8">
<title>{_e(title)} - {_e(shop["name"])}</title>
{head_extra}
</head>
<body id="main">
<div id="wrap">
<div id="header" class="xans-element- xans-layout xans-layout-statelogoff">
  <h1 class="xans-element- xans-layout xans-layout-logotop"><a href="/">{_e(shop["name"])}</a></h1>
  <ul class="xans-element- xans-layout xans-layout-statelogoff">
    <li><a href="/member/login.html">로그인</a></li>
    <li><a href="/order/basket.html">장바구니</a></li>
    <li><a href="/myshop/index.html">마이쇼핑</a></li>
  </ul>
  <div class="xans-element- xans-layout xans-layout-category"><ul>
{category_menu(shop)}
  </ul></div>
</div>
<div id="container"><div id="contents">
{body}
</div></div>
{footer_html(shop)}
</div>
</body>
</html>
"""


def category_menu(shop: dict[str, Any]) -> str:
    """The left/top category menu items."""
    return "\n".join(
        f'    <li class="xans-record-"><a href="/product/list.html?cate_no={c["cate_no"]}">{_e(c["name"])}</a></li>'
        for c in shop["categories"]
    )


def footer_html(shop: dict[str, Any]) -> str:
    """Cafe24 footer with the seller information (사업자정보)."""
    s = shop["seller"]
    return f"""<div id="footer" class="xans-element- xans-layout xans-layout-footer">
  <div class="inner">
    <p class="address">
      <span class="company">상호 : <strong>{_e(s["상호"])}</strong></span>
      <span class="ceo">대표자 : {_e(s["대표자"])}</span>
      <span class="biz-no">사업자등록번호 : {_e(s["사업자등록번호"])} <a href="https://www.ftc.go.kr/bizCommPop.do?wrkr_no={_e(s["사업자등록번호"].replace("-", ""))}">[사업자정보확인]</a></span>
      <span class="mail-order">통신판매업신고 : {_e(s["통신판매업신고"])}</span>
      <span class="tel">전화 : {_e(s["전화"])}</span>
      <span class="address-line">주소 : {_e(s["주소"])}</span>
      <span class="email">이메일 : <a href="mailto:{_e(s["이메일"])}">{_e(s["이메일"])}</a></span>
    </p>
    <p class="copyright">Copyright &copy; {_e(s["상호"])}. All rights reserved.</p>
  </div>
</div>"""


def price_text(price: int) -> str:
    return f"{price:,}원"


def product_link(product: dict[str, Any]) -> str:
    """The link a listing uses: the query form, or the SEO form for some products."""
    no, cate = product["product_no"], product["cate_no"]
    if product.get("seo_link"):
        name = quote(re.sub(r"\s+", "-", product["title"].strip()))
        return f"/product/{name}/{no}/category/{cate}/display/1/"
    return f"/product/detail.html?product_no={no}&cate_no={cate}&display_group=1"


def image_src(base_url: str, relative: str, form: str) -> str:
    """An image URL in one of the three ec-data-src forms."""
    path = served_path(relative)
    if form == "protocol_relative":
        return "//" + base_url.split("://", 1)[1] + path
    if form == "root_relative":
        return path
    return base_url + path


def listing_item(base_url: str, product: dict[str, Any]) -> str:
    """One `.prdList li` item."""
    no, link = product["product_no"], _e(product_link(product))
    img = image_src(base_url, product["main_image"], "protocol_relative")
    return f"""    <li id="anchorBoxId_{no}" class="xans-record-">
      <div class="thumbnail"><div class="prdImg">
        <a href="{link}" name="anchorBoxName_{no}"><img src="{_e(img)}" id="eListPrdImage{no}_1" alt="{_e(product["title"])}"></a>
      </div></div>
      <div class="description">
        <strong class="name"><a href="{link}"><span class="title displaynone">상품명</span> : <span style="font-size:12px;color:#555555;">{_e(product["title"])}</span></a></strong>
        <ul class="xans-element- xans-product xans-product-listitem spec">
          <li class="xans-record-"><strong class="title"><span style="font-size:12px;color:#555555;">판매가</span> :</strong> <span style="font-size:12px;color:#008BCC;font-weight:bold;">{price_text(product["price"])}</span></li>
        </ul>
      </div>
    </li>"""


def paging_html(cate_no: int, page: int, pages: int) -> str:
    """The `.xans-product-normalpaging` block; the last page's 'next' goes nowhere, as on Cafe24."""
    def href(k: int) -> str:
        return f"?cate_no={cate_no}&amp;page={k}"

    prev = href(page - 1) if page > 1 else "#none"
    nxt = href(page + 1) if page < pages else "#none"
    numbers = "".join(
        f'<li class="xans-record-"><a href="{href(k)}" class="{"this" if k == page else "other"}">{k}</a></li>'
        for k in range(1, pages + 1)
    )
    return f"""<div class="xans-element- xans-product xans-product-normalpaging ec-base-paginate">
  <a href="{href(1)}" class="first">첫 페이지</a>
  <a href="{prev}" class="prev">이전 페이지</a>
  <ol>{numbers}</ol>
  <a href="{nxt}" class="next">다음 페이지</a>
  <a href="{href(pages)}" class="last">마지막 페이지</a>
</div>"""


def listing_body(base_url: str, category: dict[str, Any], products: list[dict[str, Any]], page: int) -> str:
    """A category listing page's content."""
    pages = max(1, -(-len(products) // PER_PAGE))
    shown = products[(page - 1) * PER_PAGE: page * PER_PAGE]
    items = "\n".join(listing_item(base_url, p) for p in shown) or '    <li class="empty">등록된 상품이 없습니다.</li>'
    return f"""<div class="xans-element- xans-product xans-product-headcategory titleArea"><h2><span>{_e(category["name"])}</span></h2></div>
<div class="xans-element- xans-product xans-product-normalpackage">
  <p class="prdCount">등록 제품 : <strong>{len(products)}</strong>개</p>
  <div class="xans-element- xans-product xans-product-listnormal ec-base-product">
  <ul class="prdList grid4">
{items}
  </ul>
  </div>
</div>
{paging_html(category["cate_no"], page, pages)}"""


def detail_images_html(base_url: str, product: dict[str, Any]) -> str:
    """The lazy detail images: placeholder `src`, real URL in `ec-data-src`."""
    return "\n".join(
        f'    <p style="text-align:center;"><img src="{PLACEHOLDER_GIF}" '
        f'ec-data-src="{_e(image_src(base_url, rel, product["ec_src_form"]))}" alt=""></p>'
        for rel in product["detail_images"]
    )


def product_body(base_url: str, product: dict[str, Any]) -> str:
    """A product page's content: image, info table, detail section."""
    main = image_src(base_url, product["main_image"], "protocol_relative")
    title = _e(product["title"])
    return f"""<div class="xans-element- xans-product xans-product-detail">
 <div class="detailArea">
  <div class="xans-element- xans-product xans-product-image imgArea">
    <div class="keyImg"><div class="thumbnail">
      <a href="#none"><img src="{_e(main)}" alt="{title}" class="BigImage"></a>
    </div></div>
  </div>
  <div class="infoArea">
    <div class="headingArea"><h2>{title}</h2></div>
    <div class="xans-element- xans-product xans-product-detaildesign"><table border="1" summary="">
      <caption>기본 정보</caption>
      <tbody>
        <tr class="xans-record-"><th scope="row"><span style="font-size:16px;color:#555555;">상품명</span></th><td><span style="font-size:16px;color:#555555;">{title}</span></td></tr>
        <tr class="xans-record-"><th scope="row"><span style="font-size:12px;color:#555555;">판매가</span></th><td><span style="font-size:12px;color:#555555;"><strong id="span_product_price_text">{price_text(product["price"])}</strong><input id="product_price" name="product_price" value="" type="hidden"></span></td></tr>
        <tr class="xans-record-"><th scope="row"><span style="font-size:12px;color:#555555;">배송비</span></th><td><span class="delv_price_B">3,000원 (50,000원 이상 구매 시 무료)</span></td></tr>
      </tbody>
    </table></div>
  </div>
 </div>
</div>
<div id="prdDetail" class="ec-base-tab gFlex">
  <ul class="menu"><li class="selected"><a href="#prdDetail">상품상세정보</a></li><li><a href="#prdInfo">상품구매안내</a></li><li><a href="#prdReview">상품사용후기</a></li></ul>
  <div class="cont">
{detail_images_html(base_url, product)}
  </div>
</div>
<div id="prdInfo" class="ec-base-tab">
  <div class="cont"><h3>교환 및 반품정보</h3><p>상품 수령 후 7일 이내 교환·반품 신청이 가능합니다.</p></div>
</div>"""


def home_body(base_url: str, shop: dict[str, Any]) -> str:
    """The home page: category links and a few new arrivals."""
    cats = "\n".join(
        f'  <li><a href="/product/list.html?cate_no={c["cate_no"]}">{_e(c["name"])}</a></li>' for c in shop["categories"]
    )
    arrivals = "\n".join(listing_item(base_url, p) for p in shop["products"][:4])
    return f"""<div class="xans-element- xans-layout xans-layout-category main-category"><ul>
{cats}
</ul></div>
<p class="mypage-link"><a href="/myshop/index.html">마이쇼핑 바로가기</a></p>
<div class="xans-element- xans-product xans-product-listmain-1 xans-product-listmain xans-product-1 ec-base-product">
  <h2>NEW ARRIVALS</h2>
  <ul class="prdList grid4">
{arrivals}
  </ul>
</div>"""


# ---------------------------------------------------------------------------------------- site


class ShopSite:
    """One shop's routes and files; answers requests without touching sockets."""

    def __init__(self, root: Path, shop: dict[str, Any], published: str) -> None:
        self.root = root
        self.files_root = (root / "shops" / shop["slug"]).resolve()
        self.shop = shop
        self.base_url = ""
        self.products = {p["product_no"]: p for p in shop["products"]}
        self.categories = {c["cate_no"]: c for c in shop["categories"]}
        self.last_modified = datetime.fromisoformat(published.replace("Z", "+00:00"))
        self._etags: dict[Path, str] = {}
        self._lock = threading.Lock()

    def respond(self, path_and_query: str, headers: Any) -> Response:
        """Route one GET/HEAD request."""
        parts = urlsplit(path_and_query)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/robots.txt":
            return self.text(ROBOTS_TXT, "text/plain; charset=utf-8", headers)
        if path in ("/", "/index.html"):
            return self.html("홈", home_body(self.base_url, self.shop), headers)
        if path in PRIVATE_PAGES:
            return self.html(PRIVATE_PAGES[path], "<p>회원 전용 페이지입니다.</p>", headers)
        if path == "/product/list.html":
            return self.listing(query, headers)
        if path == "/product/detail.html":
            return self.product(_int(query, "product_no"), headers)
        seo = SEO_PATH.match(path)
        if seo:
            return self.product(int(seo.group(1)), headers)
        if path.startswith("/web/"):
            return self.static(path, headers)
        return self.not_found()

    def listing(self, query: dict[str, list[str]], headers: Any) -> Response:
        category = self.categories.get(_int(query, "cate_no"))
        if category is None:
            return self.not_found()
        products = [p for p in self.shop["products"] if p["cate_no"] == category["cate_no"]]
        page = max(1, _int(query, "page") or 1)
        return self.html(category["name"], listing_body(self.base_url, category, products, page), headers)

    def product(self, product_no: int | None, headers: Any) -> Response:
        product = self.products.get(product_no) if product_no is not None else None
        if product is None:
            return self.not_found()
        main = image_src(self.base_url, product["main_image"], "absolute")
        head = (f'<meta property="og:title" content="{_e(product["title"])}">\n'
                f'<meta property="og:image" content="{_e(main)}">')
        return self.html(product["title"], product_body(self.base_url, product), headers, head_extra=head)

    def not_found(self) -> Response:
        body = page_html(self.shop, "페이지를 찾을 수 없습니다", "<p>요청하신 페이지를 찾을 수 없습니다.</p>")
        return Response(404, body.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})

    def html(self, title: str, body: str, headers: Any, *, head_extra: str = "") -> Response:
        page = page_html(self.shop, title, body, head_extra=head_extra)
        return self.text(page, "text/html; charset=utf-8", headers)

    def text(self, text: str, content_type: str, headers: Any) -> Response:
        data = text.encode("utf-8")
        etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        return self.validated(data, content_type, etag, headers)

    def static(self, path: str, headers: Any) -> Response:
        """A file under the shop's `web/` folder, with ETag and Last-Modified."""
        target = (self.files_root / path.lstrip("/")).resolve()
        if not target.is_relative_to(self.files_root) or not target.is_file():
            return self.not_found()
        data = target.read_bytes()
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return self.validated(data, content_type, self.etag(target, data), headers)

    def etag(self, target: Path, data: bytes) -> str:
        with self._lock:
            if target not in self._etags:
                self._etags[target] = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
            return self._etags[target]

    def validated(self, data: bytes, content_type: str, etag: str, headers: Any) -> Response:
        """200 with validators, or 304 when the request's conditions say it is unchanged."""
        out = {
            "Content-Type": content_type,
            "ETag": etag,
            "Last-Modified": format_datetime(self.last_modified, usegmt=True),
            "Cache-Control": "max-age=600",
        }
        if not_modified(headers, etag, self.last_modified):
            return Response(304, b"", out)
        return Response(200, data, out)


def _int(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values or not values[0].isdigit():
        return None
    return int(values[0])


def not_modified(headers: Any, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 conditional GET: If-None-Match wins over If-Modified-Since."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        logger.debug("ignoring unparseable If-Modified-Since %r", since)
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return last_modified <= when


# -------------------------------------------------------------------------------------- server


class ShopServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one shop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], site: ShopSite, log: "RequestLog") -> None:
        super().__init__(address, ShopHandler)
        self.site = site
        self.log = log


class ShopHandler(BaseHTTPRequestHandler):
    """Turns HTTP requests into `ShopSite.respond` calls."""

    server: ShopServer
    server_version = "Apache"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self.answer(send_body=False)

    def answer(self, *, send_body: bool) -> None:
        response = self.server.site.respond(self.path, self.headers)
        sent = len(response.body) if send_body else 0
        # Logged before answering, so a client that has its answer always finds it in the log.
        self.server.log.add(RequestRecord(self.server.site.shop["slug"], self.command, self.path, response.status, sent))
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if send_body and response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
        logger.debug("%s " + format, self.server.site.shop["slug"], *args)


class RequestLog:
    """A thread-safe list of answered requests."""

    def __init__(self) -> None:
        self._items: list[RequestRecord] = []
        self._lock = threading.Lock()

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._items.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class DemoMall:
    """The demo shops, each on its own 127.0.0.1 port; builds the demo into `out_dir` if needed.

    With ``platforms=True`` (the default) it also serves one small shop per platform
    (``crawler.demo.platform_shops``, slugs ``<platform>-demo``; no copies of the client's gallery).
    Use as a context manager, or call `start()` and `stop()`.
    """

    def __init__(self, out_dir: Path, *, host: str = "127.0.0.1", platforms: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.host = host
        self.manifest: dict[str, Any] = {}
        self._log = RequestLog()
        self._servers: dict[str, ShopServer] = {}
        self._threads: list[threading.Thread] = []
        self.platform_shops: Any = None
        if platforms:
            from crawler.demo.platform_shops import PlatformShops

            self.platform_shops = PlatformShops()

    @property
    def base_urls(self) -> dict[str, str]:
        """Shop slug -> 'http://127.0.0.1:PORT' (the platform shops' slugs end in ``-demo``)."""
        urls = {slug: server.site.base_url for slug, server in self._servers.items()}
        if self.platform_shops is not None:
            from crawler.demo.platform_shops import SLUG_SUFFIX

            urls.update({p + SLUG_SUFFIX: url for p, url in self.platform_shops.base_urls.items()})
        return urls

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the answered requests (shop, method, path, status, bytes_sent)."""
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()

    def start(self) -> "DemoMall":
        if self._servers:
            return self
        self.manifest = build_demo(self.out_dir)
        if self.platform_shops is not None:
            self.platform_shops.start()
        for shop in self.manifest["shops"]:
            site = ShopSite(self.out_dir, shop, self.manifest["published"])
            server = ShopServer((self.host, 0), site, self._log)
            site.base_url = f"http://{self.host}:{server.server_address[1]}"
            thread = threading.Thread(target=server.serve_forever, name=f"demo-{shop['slug']}", daemon=True)
            thread.start()
            self._servers[shop["slug"]] = server
            self._threads.append(thread)
            logger.info("demo shop %s (%s) at %s", shop["slug"], shop["name"], site.base_url)
        return self

    def stop(self) -> None:
        if self.platform_shops is not None:
            self.platform_shops.stop()
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> "DemoMall":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
