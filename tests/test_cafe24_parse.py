"""Offline tests of the Cafe24 adapter over saved product and listing pages."""
from __future__ import annotations

from pathlib import Path

import pytest
from scrapy.http import HtmlResponse

from crawler.platforms import cafe24

FIXTURES = Path(__file__).parent / "fixtures" / "cafe24"
SHOP = "https://bomnal.example.com"


def response(name: str, url: str) -> HtmlResponse:
    return HtmlResponse(url=url, body=(FIXTURES / name).read_bytes(), encoding="utf-8")


@pytest.fixture(scope="module")
def product() -> dict:
    return cafe24.extract_product(response("product_detail.html", f"{SHOP}/product/detail.html?product_no=11&cate_no=24"))


def test_title_and_price(product: dict) -> None:
    assert product["platform"] == "cafe24"
    assert product["title"] == "린넨 오버핏 셔츠"
    assert product["price"] == "39,000원"


def test_product_images_main_and_gallery(product: dict) -> None:
    assert product["product_images"] == [
        f"{SHOP}/web/product/big/202406/shirt_main.jpg",
        f"{SHOP}/web/product/extra/small/202406/shirt_1.jpg",
        f"{SHOP}/web/product/extra/small/202406/shirt_2.jpg",
    ]


def test_detail_images_in_order_all_forms_no_placeholders(product: dict) -> None:
    assert product["detail_images"] == [
        f"{SHOP}/web/upload/NNEditor/20240601/detail_01.jpg",  # ec-data-src //host/...
        f"{SHOP}/web/upload/NNEditor/20240601/detail_02.jpg",  # ec-data-src /web/upload/...
        "https://cdn.example.net/bomnal/detail_03.jpg",  # ec-data-src absolute
        f"{SHOP}/web/upload/NNEditor/20240601/detail_04.jpg",  # plain src
        f"{SHOP}/web/upload/NNEditor/20240601/detail_05.jpg",  # #prdDetailContentLazy
        f"{SHOP}/web/upload/appfiles/edibot/detail_06.jpg",  # .edibot-product-detail
    ]
    assert not any(url.startswith("data:") for url in product["detail_images"])


def test_protocol_relative_takes_the_page_scheme() -> None:
    http = cafe24.extract_product(response("product_detail.html", "http://bomnal.example.com/product/detail.html?product_no=11"))
    assert http["detail_images"][0] == "http://bomnal.example.com/web/upload/NNEditor/20240601/detail_01.jpg"


def test_seller_from_footer(product: dict) -> None:
    assert product["seller"] == {
        "company": "봄날상점",
        "representative": "정하늘",
        "business_number": "105-87-24680",
        "mail_order_number": "2024-서울성동-0789",
        "email": "hello@bomnal.example.com",
        "address": "서울특별시 성동구 왕십리로 83-21, 5층 (성수동1가)",
    }


def test_fallbacks_and_one_line_footer() -> None:
    data = cafe24.extract_product(response("product_minimal.html", f"{SHOP}/product/tote/7/category/3/display/1/"))
    assert data["title"] == "캔버스 토트백"
    assert data["price"] is None
    assert data["product_images"] == [f"{SHOP}/web/product/big/202405/tote.png"]
    assert data["detail_images"] == []
    assert data["seller"] == {
        "company": "가방가게",
        "representative": "오세훈",
        "business_number": "301-12-34567",
        "mail_order_number": "2022-대전유성-0042",
        "email": "bag@bagshop.example",
        "address": "대전광역시 유성구 대학로 99",
    }


def test_seller_table_without_colons() -> None:
    text = cafe24.seller_text(response("product_detail.html", f"{SHOP}/product/detail.html?product_no=11"))
    assert "상호명 : 봄날상점" in text.splitlines()


@pytest.mark.parametrize(
    ("url", "number"),
    [
        (f"{SHOP}/product/detail.html?product_no=11&cate_no=24&display_group=1", 11),
        (f"{SHOP}/product/detail.html?cate_no=24&product_no=11", 11),
        (f"{SHOP}/product/린넨-자켓/12/category/24/display/1/", 12),
        (f"{SHOP}/product/%EB%A6%B0%EB%84%A8/12/category/24/display/2", 12),
        (f"{SHOP}/product/list.html?cate_no=24", None),
        (f"{SHOP}/product/detail.html?product_no=abc", None),
        (f"{SHOP}/board/product/list.html?board_no=4", None),
    ],
)
def test_product_urls(url: str, number: int | None) -> None:
    assert cafe24.product_no(url) == number
    assert cafe24.is_product_url(url) is (number is not None)
    if number is not None:
        assert cafe24.canonical_product_url(url) == f"{SHOP}/product/detail.html?product_no={number}"


def test_both_forms_share_one_canonical_url() -> None:
    a = cafe24.canonical_product_url("HTTPS://Bomnal.example.com/product/detail.html?product_no=12&cate_no=24")
    b = cafe24.canonical_product_url(f"{SHOP}/product/린넨-자켓/12/category/24/display/1/")
    assert a == b


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{SHOP}/product/list.html?cate_no=24", True),
        (f"{SHOP}/product/list.html?cate_no=24&page=3", True),
        (f"{SHOP}/category/outer/24/", True),
        (f"{SHOP}/", True),
        (f"{SHOP}/product/list.html", False),
        (f"{SHOP}/member/login.html", False),
        (f"{SHOP}/product/detail.html?product_no=11", False),
    ],
)
def test_listing_urls(url: str, expected: bool) -> None:
    assert cafe24.is_listing_url(url) is expected


def test_listing_links_products_pagination_categories() -> None:
    links = cafe24.listing_links(response("listing.html", f"{SHOP}/product/list.html?cate_no=24&page=1"))
    assert links.products == [
        f"{SHOP}/product/detail.html?product_no=11&cate_no=24&display_group=1",
        f"{SHOP}/product/린넨-자켓/12/category/24/display/1/",
        f"{SHOP}/product/detail.html?product_no=13&cate_no=24",
    ]
    assert links.listings == [
        f"{SHOP}/",
        f"{SHOP}/product/list.html?cate_no=24",
        f"{SHOP}/product/list.html?cate_no=25",
        f"{SHOP}/category/bottoms/26/",
        f"{SHOP}/product/list.html?cate_no=24&page=2",
    ]


def test_crawled_text_is_only_data() -> None:
    html = (
        '<html><body><div class="xans-product-detaildesign"><table><tr><th>상품명</th>'
        '<td>../../etc/passwd &lt;script&gt;</td></tr></table></div>'
        '<div id="prdDetail"><img ec-data-src="javascript:alert(1)" src="data:,x"><img src="ftp://x/y.jpg"></div></body></html>'
    )
    data = cafe24.extract_product(HtmlResponse(url=f"{SHOP}/product/detail.html?product_no=1", body=html.encode(), encoding="utf-8"))
    assert data["title"] == "../../etc/passwd <script>"
    assert data["detail_images"] == []
