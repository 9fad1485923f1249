"""Serve one small local shop per platform (Godomall, MakeShop, Imweb, Smartstore, 11st, Gmarket, generic, Cafe24 mobile)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageDraw

from crawler.demo.server import PLACEHOLDER_GIF, RequestLog, RequestRecord, Response, not_modified

logger = logging.getLogger(__name__)

PUBLISHED = datetime(2024, 6, 1, tzinfo=timezone.utc)
ROBOTS_TXT = "User-agent: *\nDisallow: /member/\nAllow: /\n"
#: Product numbers of each shop (MakeShop's last one answers with its block page).
PRODUCTS = (11, 12)
MAKESHOP_BLOCKED = 13
#: Images per product: (product photos, detail images).
N_PRODUCT, N_DETAIL = 2, 3


@dataclass(frozen=True)
class Seller:
    """The seller identity a shop shows."""

    company: str
    representative: str
    business_number: str
    mail_order_number: str
    email: str
    address: str


SELLERS = {
    "cafe24": Seller("모바일상점", "강모바", "301-11-10001", "2024-서울종로-0101", "m@mobile.example", "서울특별시 종로구 종로 1"),
    "godomall": Seller("고도데모", "고도일", "302-12-10002", "2024-부산중구-0202", "godo@godo.example", "부산광역시 중구 중앙대로 2"),
    "makeshop": Seller("메이크데모", "메이일", "303-13-10003", "2024-대구중구-0303", "make@make.example", "대구광역시 중구 국채보상로 3"),
    "imweb": Seller("아임데모", "임일", "304-14-10004", "2024-인천남동-0404", "im@im.example", "인천광역시 남동구 정각로 4"),
    "smartstore": Seller("스마트데모", "스마일", "305-15-10005", "2024-광주서구-0505", "smart@smart.example", "광주광역시 서구 내방로 5"),
    "11st": Seller("십일데모", "십일일", "306-16-10006", "2024-대전서구-0606", "eleven@eleven.example", "대전광역시 서구 둔산로 6"),
    "gmarket": Seller("지데모", "지일", "307-17-10007", "2024-울산남구-0707", "g@g.example", "울산광역시 남구 중앙로 7"),
    "generic": Seller("제네릭데모", "제일", "308-18-10008", "2024-세종-0808", "gen@gen.example", "세종특별자치시 한누리대로 8"),
}
PLATFORM_SHOPS = tuple(SELLERS)
#: Suffix of a platform shop's slug in the demo mall (``godomall-demo``, ...).
SLUG_SUFFIX = "-demo"


def start_path(platform: str) -> str:
    """Where a crawl of a platform shop starts (Smartstore: the store's home)."""
    return "/demostore" if platform == "smartstore" else "/"


def platform_of_slug(slug: str) -> str | None:
    """The platform of a demo slug such as ``11st-demo``, else None (a Cafe24 demo-mall shop)."""
    platform = slug.removesuffix(SLUG_SUFFIX)
    return platform if slug.endswith(SLUG_SUFFIX) and platform in SELLERS else None


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def footer(seller: Seller, css_id: str = "footer") -> str:
    """A footer with the 사업자정보 labels Korean shops use."""
    return (f'<div id="{css_id}" class="footer"><p>상호 : {_e(seller.company)} | 대표자 : {_e(seller.representative)} | '
            f'사업자등록번호 : {_e(seller.business_number)} | 통신판매업신고 : {_e(seller.mail_order_number)}</p>'
            f'<p>주소 : {_e(seller.address)} | 이메일 : {_e(seller.email)}</p></div>')


def title_of(platform: str, no: int) -> str:
    return f"{platform} 데모 상품 {no}"


def price_of(no: int) -> int:
    return 10_000 + no * 1_000


def image_path(platform: str, no: int, role: str, i: int) -> str:
    return f"/img/{platform}/{no}/{role}-{i}.jpg"


def product_imgs(platform: str, no: int) -> list[str]:
    return [image_path(platform, no, "p", i) for i in range(N_PRODUCT)]


def detail_imgs(platform: str, no: int) -> list[str]:
    return [image_path(platform, no, "d", i) for i in range(N_DETAIL)]


def make_image(path: str) -> bytes:
    """A deterministic abstract picture (rectangles and circles) for an image path: no photo of the demo gallery."""
    rng = random.Random(hashlib.sha256(path.encode()).digest())
    tall = "/d-" in path
    size = (480, 1400) if tall else (400, 400)
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(24):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x0, y0, x0 + rng.randrange(20, 200), y0 + rng.randrange(20, 200))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def page(title: str, body: str, head: str = "") -> str:
    return f'<!DOCTYPE html>\n<html lang="ko"><head><meta charset="utf-8"><title>{_e(title)}</title>{head}</head><body>{body}</body></html>'


def imgs(urls: list[str], lazy: str | None = None) -> str:
    if lazy:
        return "".join(f'<p><img src="{PLACEHOLDER_GIF}" {lazy}="{_e(u)}" alt=""></p>' for u in urls)
    return "".join(f'<p><img src="{_e(u)}" alt=""></p>' for u in urls)


# ------------------------------------------------------------------------------ platforms' markup


class Shop:
    """One platform's routes: ``route(path, query) -> (content type, body) | None``."""

    def __init__(self, platform: str, base_url: str = "") -> None:
        self.platform = platform
        self.seller = SELLERS[platform]
        self.base_url = base_url

    def products(self) -> tuple[int, ...]:
        return (*PRODUCTS, MAKESHOP_BLOCKED) if self.platform == "makeshop" else PRODUCTS

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[str, str] | None:
        handler: Callable[[str, dict], tuple[str, str] | None] = getattr(self, "route_" + self.platform.replace("11st", "elevenst"))
        return handler(path, query)

    def html(self, title: str, body: str, head: str = "") -> tuple[str, str]:
        return "text/html; charset=utf-8", page(title, body, head)

    # cafe24 (mobile skin)
    def route_cafe24(self, path: str, q: dict) -> tuple[str, str] | None:
        if path in ("/", "/product/list.html"):
            links = "".join(f'<li><a href="/product/detail.html?product_no={n}&amp;cate_no=1">{_e(title_of("cafe24", n))}</a></li>' for n in PRODUCTS)
            return self.html("모바일상점", f'<div class="xans-element- xans-product xans-product-listnormal"><ul>{links}</ul></div>{footer(self.seller)}')
        n = _int(q, "product_no")
        if path == "/product/detail.html" and n in PRODUCTS:
            body = (f'<div class="xans-element- xans-product xans-product-mobileimage">{imgs(product_imgs("cafe24", n))}</div>'
                    f'<div class="xans-element- xans-product xans-product-detaildesign"><table><tr><th>상품명</th><td>{_e(title_of("cafe24", n))}</td></tr>'
                    f'<tr><th>판매가</th><td>{price_of(n):,}원</td></tr></table></div>'
                    f'<div id="prdDetail"><div class="cont">{imgs(detail_imgs("cafe24", n), "ec-data-src")}</div></div>'
                    f'<div id="footer" class="xans-element- xans-layout xans-layout-footer">{footer(self.seller, "ft")}</div>')
            return self.html(title_of("cafe24", n), body)
        return None

    def route_godomall(self, path: str, q: dict) -> tuple[str, str] | None:
        head = '<script src="/js/gd_common.js"></script>'
        if path == "/":
            return self.html("고도데모", '<a href="/goods/goods_list.php?cateCd=001">전체</a>' + footer(self.seller), head)
        if path == "/goods/goods_list.php":
            links = [f'<a href="/goods/goods_view.php?goodsNo={PRODUCTS[0]}&amp;mtn=1">a</a>',
                     f'<a href="/shop/goods/goods_view.php?goodsno={PRODUCTS[1]}&amp;category=001">b</a>']
            return self.html("목록", "".join(links), head)
        n = _int(q, "goodsNo") if path == "/goods/goods_view.php" else _int(q, "goodsno") if path == "/shop/goods/goods_view.php" else None
        if n in PRODUCTS:
            body = (f'<div class="item_photo_big"><span id="mainImage"><img src="{product_imgs("godomall", n)[0]}"></span></div>'
                    f'<div class="item_photo_slide">{imgs(product_imgs("godomall", n)[1:])}</div>'
                    f'<div class="item_detail_tit"><h3>{_e(title_of("godomall", n))}</h3></div>'
                    f'<dl class="item_price"><dt>판매가</dt><dd><strong>{price_of(n):,}</strong>원</dd></dl>'
                    f'<div id="detail"><div class="detail_cont"><div class="detail_explain_box"><div class="txt-manual">'
                    f'{imgs(detail_imgs("godomall", n))}</div></div></div></div>{footer(self.seller, "footer_wrap")}')
            return self.html(title_of("godomall", n), body, head)
        return None

    def route_makeshop(self, path: str, q: dict) -> tuple[str, str] | None:
        head = '<script src="/shopimages/demo/common.js"></script>'
        if path == "/":
            return self.html("메이크데모", '<a href="/shop/shopbrand.html?xcode=001&amp;type=X">전체</a>' + footer(self.seller), head)
        if path == "/shop/shopbrand.html":
            links = "".join(f'<a href="/shop/shopdetail.html?branduid={n}&amp;xcode=001&amp;mcode=001">{n}</a>' for n in self.products())
            return self.html("목록", links, head)
        n = _int(q, "branduid") if path == "/shop/shopdetail.html" else None
        if n == MAKESHOP_BLOCKED:
            return self.html("차단", '<img src="/images/403page/403.png" alt="접근 차단">')
        if n in PRODUCTS:
            body = (f'<div id="productDetail"><div class="thumb-wrap">{imgs(product_imgs("makeshop", n))}</div>'
                    f'<div class="shopdetailInfo"><h3 class="tit-prd">{_e(title_of("makeshop", n))}</h3>'
                    f'<div class="price">{price_of(n):,}원</div></div>'
                    f'<div class="prd-detail">{imgs(detail_imgs("makeshop", n))}</div></div>{footer(self.seller)}')
            return self.html(title_of("makeshop", n), body, head)
        return None

    def route_imweb(self, path: str, q: dict) -> tuple[str, str] | None:
        head = '<link rel="stylesheet" href="/vendor-cdn.imweb.me/css/site.css">'
        n = _int(q, "idx")
        if path in ("/", "/shop/") and n is None:
            links = "".join(f'<a href="/shop_view/?idx={k}">{k}</a>' for k in PRODUCTS)
            return self.html("아임데모", f'{links}{footer(self.seller, "doz_footer")}', head)
        if path == "/shop_view/" and n in PRODUCTS:
            body = (f'<div id="prod_image_list">{imgs(product_imgs("imweb", n), "data-src")}</div>'
                    f'<h1 class="view_tit">{_e(title_of("imweb", n))}</h1><span class="real_price">{price_of(n):,}원</span>'
                    f'<div id="prod_detail_content_pc" class="fr-view">{imgs(detail_imgs("imweb", n))}</div>{footer(self.seller, "doz_footer")}')
            return self.html(title_of("imweb", n), body, head)
        return None

    def route_elevenst(self, path: str, q: dict) -> tuple[str, str] | None:
        if path == "/":
            return self.html("11데모", "".join(f'<a href="/products/{n}">{n}</a>' for n in PRODUCTS))
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "products" and parts[1].isdigit() and int(parts[1]) in PRODUCTS:
            n = int(parts[1])
            if parts[2:] == ["pc-desc"]:
                return self.html("desc", f'<div class="ifrm_prdc_detail">{imgs(detail_imgs("11st", n))}</div>')
            if parts[2:]:
                return None
            body = (f'<div id="productImg">{imgs(product_imgs("11st", n))}</div>'
                    f'<div class="c_product_info_title"><h1 class="title">{_e(title_of("11st", n))}</h1></div>'
                    f'<div class="c_product_price"><dl><dt>판매가</dt><dd>{price_of(n):,}원</dd></dl></div>'
                    f'<iframe id="prdDescIfrm" src="/products/{n}/pc-desc?prdNo={n}"></iframe>'
                    f'<div class="c_product_seller_info"><h3>판매자정보</h3>{footer(self.seller, "sellerInfo")}</div>')
            return self.html(title_of("11st", n), body)
        return None

    def route_gmarket(self, path: str, q: dict) -> tuple[str, str] | None:
        n = _int(q, "goodscode")
        if path == "/":
            return self.html("G데모", "".join(f'<a href="/Item?goodscode={k}">{k}</a>' for k in PRODUCTS))
        if path == "/Item/DetailView/Item.aspx" and n in PRODUCTS:
            return self.html("detail", f'<div id="basic_detail_html">{imgs(detail_imgs("gmarket", n))}</div>')
        if path == "/Item" and n in PRODUCTS:
            body = (f'<div class="box__viewer-container">{imgs(product_imgs("gmarket", n))}</div>'
                    f'<h1 class="itemtit">{_e(title_of("gmarket", n))}</h1><strong class="price_real">{price_of(n):,}원</strong>'
                    f'<iframe id="detail1" src="/Item/DetailView/Item.aspx?goodscode={n}"></iframe>'
                    f'<div class="box__seller-info"><h3>판매자 정보</h3>{footer(self.seller, "seller")}</div>')
            return self.html(title_of("gmarket", n), body)
        return None

    def route_generic(self, path: str, q: dict) -> tuple[str, str] | None:
        if path == "/":
            return self.html("제네릭데모", "".join(f'<a href="/goods/{n}">{n}</a>' for n in PRODUCTS) + footer(self.seller, "biz"))
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "goods" and parts[1].isdigit() and int(parts[1]) in PRODUCTS:
            n = int(parts[1])
            body = (f'<section class="goods-photos">{imgs(product_imgs("generic", n))}</section>'
                    f'<h2 class="goods-name">{_e(title_of("generic", n))}</h2><p class="goods-price">{price_of(n):,}원</p>'
                    f'<article class="goods-story">{imgs(detail_imgs("generic", n), "data-src")}</article>{footer(self.seller, "biz")}')
            return self.html(title_of("generic", n), body)
        return None

    def route_smartstore(self, path: str, q: dict) -> tuple[str, str] | None:
        """Smartstore: a script shell; the browser renders products, detail (lazy, from an API) and seller."""
        parts = path.strip("/").split("/")
        if parts == ["demostore"]:
            state = {"storeProducts": [{"productNo": n} for n in PRODUCTS], "channel": {"channelUid": "demoChannelUid001", "channelName": self.seller.company}}
            return self.html(self.seller.company, '<div id="app"></div>', _state_script(state) + f"<script>{SMARTSTORE_HOME_JS}</script>")
        if len(parts) == 3 and parts[:2] == ["demostore", "products"] and parts[2].isdigit() and int(parts[2]) in PRODUCTS:
            n = int(parts[2])
            state = {"product": {"A": {"productNo": str(n), "name": title_of("smartstore", n), "salePrice": price_of(n),
                                       "channel": {"channelUid": "demoChannelUid001", "channelName": self.seller.company},
                                       "productImages": [{"url": u, "order": i + 1} for i, u in enumerate(product_imgs("smartstore", n))]}},
                     "smartStoreV2": {"channel": {"channelUid": "demoChannelUid001", "channelName": self.seller.company,
                                                  "representName": self.seller.representative,
                                                  "businessRegistrationNumber": self.seller.business_number,
                                                  "mailOrderNumber": self.seller.mail_order_number, "email": self.seller.email,
                                                  "businessAddress": self.seller.address}}}
            return self.html(title_of("smartstore", n), '<div id="app"></div>', _state_script(state) + f"<script>{SMARTSTORE_PRODUCT_JS}</script>")
        if len(parts) == 5 and parts[:3] == ["i", "v1", "products"] and parts[4] == "contents" and parts[3].isdigit() and int(parts[3]) in PRODUCTS:
            return "application/json", json.dumps({"images": detail_imgs("smartstore", int(parts[3]))})
        return None


def _state_script(state: dict) -> str:
    data = json.dumps(state, ensure_ascii=False).replace("</", "<\\/")
    return f"<script>window.__PRELOADED_STATE__={data};</script>"


#: Renders the store's product links from the state.
SMARTSTORE_HOME_JS = """
document.addEventListener('DOMContentLoaded', () => {
  const s = window.__PRELOADED_STATE__, app = document.getElementById('app');
  for (const p of s.storeProducts) {
    const a = document.createElement('a'); a.href = '/demostore/products/' + p.productNo; a.textContent = p.productNo;
    a.className = '_3Xn' + p.productNo; app.appendChild(a);
  }
});
"""
#: Renders a product: hashed class names, the detail from an API call, lazy images resolved only when scrolled into view
#: (the real URL is never in an attribute before that), and the seller section.
SMARTSTORE_PRODUCT_JS = """
document.addEventListener('DOMContentLoaded', async () => {
  const s = window.__PRELOADED_STATE__, p = s.product.A, c = s.smartStoreV2.channel, app = document.getElementById('app');
  app.innerHTML = '<h3 class="_22kNQuEXmb"></h3><div class="_23RpOU6xpc"></div>'
    + '<div class="_9F9CWn02VE"><div class="se-main-container"></div></div><div class="_1bNpxsTdXg"></div>';
  app.querySelector('h3').textContent = p.name;
  for (const im of p.productImages) {
    const i = document.createElement('img'); i.src = im.url; app.querySelector('._23RpOU6xpc').appendChild(i);
  }
  const r = await fetch('/i/v1/products/' + p.productNo + '/contents');
  const detail = await r.json(), box = app.querySelector('.se-main-container'), pending = new Map();
  const io = new IntersectionObserver(es => es.forEach(e => {
    if (e.isIntersecting && pending.has(e.target)) { e.target.src = pending.get(e.target); pending.delete(e.target); }
  }));
  for (const url of detail.images) {
    const d = document.createElement('div'); d.className = 'se-module se-module-image';
    const i = document.createElement('img'); i.className = 'se-image-resource';
    i.src = 'data:image/gif;base64,R0lGODlhAQABAAAAACw='; i.style.display = 'block'; i.style.height = '1400px';
    pending.set(i, url); d.appendChild(i); box.appendChild(d); io.observe(i);
  }
  const t = document.createElement('table'), rows = [['상호명', c.channelName], ['대표자', c.representName],
    ['사업자등록번호', c.businessRegistrationNumber], ['통신판매업신고', c.mailOrderNumber], ['이메일', c.email], ['주소', c.businessAddress]];
  for (const [k, v] of rows) { const tr = t.insertRow(); tr.insertCell().textContent = k; tr.insertCell().textContent = v; }
  const sec = app.querySelector('._1bNpxsTdXg'), h = document.createElement('h3'); h.textContent = '판매자 정보';
  sec.appendChild(h); sec.appendChild(t);
});
"""


def _int(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    return int(values[0]) if values and values[0].isdigit() else None


# ------------------------------------------------------------------------------ server


class PlatformSite:
    """One platform shop answering requests (pages, images, robots.txt) with validators and 304s."""

    def __init__(self, platform: str) -> None:
        self.shop = Shop(platform)
        self.platform = platform
        self._images: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self.shop.base_url

    def image(self, path: str) -> bytes | None:
        prefix = f"/img/{self.platform}/"
        if not path.startswith(prefix) or not path.endswith(".jpg"):
            return None
        with self._lock:
            if path not in self._images:
                self._images[path] = make_image(path)
            return self._images[path]

    def respond(self, path_and_query: str, headers: Any) -> Response:
        parts = urlsplit(path_and_query)
        if parts.path == "/robots.txt":
            return self.validated(ROBOTS_TXT.encode(), "text/plain; charset=utf-8", headers)
        data = self.image(parts.path)
        if data is not None:
            return self.validated(data, "image/jpeg", headers)
        if parts.path.endswith("/403.png") and "/403page/" in parts.path:
            return self.validated(make_image(parts.path), "image/png", headers)
        routed = self.shop.route(parts.path, parse_qs(parts.query))
        if routed is None:
            return Response(404, b"not found", {"Content-Type": "text/plain; charset=utf-8"})
        content_type, text = routed
        return self.validated(text.encode("utf-8"), content_type, headers)

    def validated(self, data: bytes, content_type: str, headers: Any) -> Response:
        etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        out = {"Content-Type": content_type, "ETag": etag, "Last-Modified": format_datetime(PUBLISHED, usegmt=True)}
        if not_modified(headers, etag, PUBLISHED):
            return Response(304, b"", out)
        return Response(200, data, out)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: PlatformSite, log: RequestLog) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.site = site
        self.log = log


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        response = self.server.site.respond(self.path, self.headers)
        self.server.log.add(RequestRecord(self.server.site.platform, "GET", self.path, response.status, len(response.body)))
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
        logger.debug("%s " + format, self.server.site.platform, *args)


class PlatformShops:
    """The platform shops, each on its own 127.0.0.1 port; a context manager. ``start_urls`` gives each shop's start URL."""

    def __init__(self, platforms: tuple[str, ...] = PLATFORM_SHOPS) -> None:
        self.platforms = platforms
        self._log = RequestLog()
        self._servers: dict[str, _Server] = {}
        self._threads: list[threading.Thread] = []

    @property
    def base_urls(self) -> dict[str, str]:
        return {p: s.site.base_url for p, s in self._servers.items()}

    @property
    def start_urls(self) -> dict[str, str]:
        """Where a crawl of each shop starts (Smartstore: the store's home)."""
        return {p: url + start_path(p) for p, url in self.base_urls.items()}

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()

    def generic_rules(self) -> str:
        """YAML rules for the generic shop (its host includes the port this run got)."""
        from crawler.platforms.generic import rules_yaml

        return rules_yaml(urlsplit(self.base_urls["generic"]).netloc)

    def expected(self, platform: str) -> dict[str, Any]:
        """What a crawl of a shop must find: product numbers, image paths per product and the seller."""
        return {"products": PRODUCTS, "product_images": {n: product_imgs(platform, n) for n in PRODUCTS},
                "detail_images": {n: detail_imgs(platform, n) for n in PRODUCTS}, "seller": SELLERS[platform]}

    def start(self) -> "PlatformShops":
        for platform in self.platforms:
            site = PlatformSite(platform)
            server = _Server(site, self._log)
            site.shop.base_url = f"http://127.0.0.1:{server.server_address[1]}"
            thread = threading.Thread(target=server.serve_forever, name=f"shop-{platform}", daemon=True)
            thread.start()
            self._servers[platform] = server
            self._threads.append(thread)
            logger.info("%s demo shop at %s", platform, site.base_url)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> "PlatformShops":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
