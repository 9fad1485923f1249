"""Offline tests of every platform adapter over saved fixture pages (tests/fixtures/<platform>/)."""
from __future__ import annotations

from pathlib import Path

import pytest
from scrapy.http import HtmlResponse

from crawler import platforms
from crawler.platforms import generic

FIXTURES = Path(__file__).parent / "fixtures"


def page(name: str, url: str) -> HtmlResponse:
    return HtmlResponse(url=url, body=(FIXTURES / name).read_bytes(), encoding="utf-8")


@pytest.fixture(autouse=True)
def generic_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(generic.CONFIG_ENV, str(FIXTURES / "generic" / "shops.yaml"))


CASES = {
    "cafe24-mobile": (
        "cafe24", "cafe24/product_mobile.html", "https://m.bomnal.example.com/product/detail.html?product_no=12",
        {
            "title": "코튼 반팔 티", "price": "19,800원",
            "product_images": ["https://m.bomnal.example.com/web/product/big/202406/tee_main.jpg",
                               "https://m.bomnal.example.com/web/product/extra/big/202406/tee_2.jpg"],
            "detail_images": ["https://m.bomnal.example.com/web/upload/NNEditor/20240602/m_detail_1.jpg",
                              "https://m.bomnal.example.com/web/upload/NNEditor/20240602/m_detail_2.jpg"],
            "seller": {"company": "봄날상점", "representative": "정하늘", "business_number": "105-87-24680",
                       "mail_order_number": "2024-서울성동-0789", "email": "hello@bomnal.example.com"},
        },
    ),
    "godomall": (
        "godomall", "godomall/goods_view.html", "https://godo.example.com/goods/goods_view.php?goodsNo=1000000123",
        {
            "title": "데님 와이드 팬츠", "price": "49,000원",
            "product_images": [
                "https://cdn-pro-web-250-12.cdn-nhncommerce.com/godo123_godomall_com/data/goods/24/06/01/1000000123/1000000123_detail_011.jpg",
                "https://godo.example.com/data/goods/24/06/01/1000000123/1000000123_add1_065.jpg"],
            "detail_images": ["https://gi.esmplus.com/godo123/detail/denim_01.jpg", "https://gi.esmplus.com/godo123/detail/denim_02.jpg",
                              "https://godo.example.com/data/editor/goods/240601/denim_03.jpg",
                              "https://godo.example.com/data/editor/goods/240601/denim_size.jpg"],
            "seller": {"company": "고도상회", "representative": "최다온", "business_number": "617-81-55555",
                       "mail_order_number": "2023-부산해운대-1122", "email": "shop@godo-sanghoe.example",
                       "address": "부산광역시 해운대구 센텀중앙로 97, 1502호"},
        },
    ),
    "godomall-legacy": (
        "godomall", "godomall/goods_view_legacy.html", "http://old.example.com/shop/goods/goods_view.php?goodsno=77&category=001",
        {
            "title": "린넨 셔츠", "price": "32,000원",
            "product_images": ["http://old.example.com/shop/data/goods/linen_m.jpg"],
            "detail_images": ["http://old.example.com/shop/data/editor/linen_detail1.jpg", "http://old.example.com/shop/data/editor/linen_detail2.jpg"],
            "seller": {"company": "옛날상점", "representative": "박옛날", "business_number": "101-01-11111", "email": "old@shop.example"},
        },
    ),
    "makeshop": (
        "makeshop", "makeshop/shopdetail.html", "https://makeknit.example.com/shop/shopdetail.html?branduid=122&xcode=001&mcode=002",
        {
            "title": "울 니트 가디건", "price": "58,000원",
            "product_images": ["https://makeknit.example.com/shopimages/makeknit/0010020000122.jpg?1717200000",
                               "https://makeknit.example.com/shopimages/makeknit/0010020000122_1.jpg",
                               "https://makeknit.example.com/shopimages/makeknit/0010020000122_2.jpg"],
            "detail_images": ["http://makeknit.img13.kr/detail/cardigan_01.jpg", "https://makeknit.example.com/design/makeknit/detail/cardigan_02.jpg"],
            "seller": {"company": "메이크니트", "representative": "윤니트", "business_number": "220-88-12345",
                       "mail_order_number": "2022-서울강남-03333", "email": "knit@makeknit.example", "address": "서울특별시 강남구 테헤란로 152"},
        },
    ),
    "imweb": (
        "imweb", "imweb/product.html", "https://imshop.example.com/shop_view/?idx=45",
        {
            "title": "오가닉 코튼 에코백", "price": "25,000원",
            "product_images": ["https://cdn.imweb.me/thumbnail/20240601/a1b2c3_main.jpg", "https://cdn.imweb.me/thumbnail/20240601/a1b2c3_2.jpg"],
            "detail_images": ["https://cdn.imweb.me/upload/S20240601/eco_detail_1.jpg", "https://cdn.imweb.me/upload/S20240601/eco_detail_2.jpg"],
            "seller": {"company": "아임상점", "representative": "한소망", "business_number": "311-22-33344",
                       "mail_order_number": "2024-대전유성-0555", "email": "im@imshop.example", "address": "대전광역시 유성구 대학로 99"},
        },
    ),
    "smartstore": (
        "smartstore", "smartstore/product_rendered.html", "https://smartstore.naver.com/summershop/products/8123456789",
        {
            "title": "리넨 반팔 셔츠", "price": "27,900원",
            "product_images": ["https://shop-phinf.pstatic.net/20240601_1/linen_main.jpg", "https://shop-phinf.pstatic.net/20240601_2/linen_sub.jpg"],
            "detail_images": ["https://shop-phinf.pstatic.net/20240601_9/linen_detail_1.jpg",
                              "https://shop-phinf.pstatic.net/20240601_10/linen_detail_2.jpg",
                              "https://shop-phinf.pstatic.net/20240601_11/linen_detail_3.jpg"],
            "seller": {"company": "여름옷가게", "representative": "문여름", "business_number": "510-20-11223",
                       "mail_order_number": "2024-경남창원-0099", "email": "summer@summer.example",
                       "address": "경상남도 창원시 의창구 중앙대로 1", "channel_uid": "2sWDw6fZMrHr7xQ9AbCdE"},
        },
    ),
    "11st": (
        "11st", "11st/product.html", "https://www.11st.co.kr/products/3845017291",
        {
            "title": "스트라이프 셔츠원피스", "price": "34,900원",
            "product_images": ["https://cdn.011st.com/11dims/resize/600x600/quality/75/11src/product/3845017291/B.jpg?1717200000",
                               "https://cdn.011st.com/11dims/resize/80x80/11src/product/3845017291/B.jpg"],
            "detail_images": [],
            "seller": {"company": "(주)줄무늬", "representative": "서줄무", "business_number": "123-81-98765",
                       "mail_order_number": "2021-서울중구-1010", "email": "stripe@stripe.example", "address": "서울특별시 중구 을지로 100"},
        },
    ),
    "gmarket": (
        "gmarket", "gmarket/item.html", "https://item.gmarket.co.kr/Item?goodscode=2901234567",
        {
            "title": "쿨링 린넨 이불", "price": "59,900원",
            "product_images": ["https://gdimg.gmarket.co.kr/2901234567/still/600?ver=1717200000",
                               "https://gdimg.gmarket.co.kr/2901234567/still/600_1?ver=1717200000"],
            "detail_images": [],
            "seller": {"company": "이불나라", "representative": "노이불", "business_number": "606-12-34567",
                       "mail_order_number": "2020-경기부천-0777", "email": "bed@bed.example", "address": "경기도 부천시 길주로 1"},
        },
    ),
    "generic": (
        "generic", "generic/product.html", "https://clay.example.com/goods/12",
        {
            "title": "핸드메이드 머그", "price": "18,000원",
            "product_images": ["https://clay.example.com/images/mug/main.jpg", "https://clay.example.com/images/mug/side.jpg"],
            "detail_images": ["https://clay.example.com/images/mug/story-1.jpg", "https://clay.example.com/images/mug/story-2.jpg"],
            "seller": {"company": "도예공방", "representative": "흙손", "business_number": "777-77-77777", "email": "clay@clay.example"},
        },
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_extract_product(case: str) -> None:
    platform, name, url, expected = CASES[case]
    data = platforms.adapter(platform).extract_product(page(name, url))
    assert data == {"platform": platform, **expected}


@pytest.mark.parametrize("case", sorted(CASES))
def test_detected_from_url_and_page(case: str) -> None:
    platform, name, url, _ = CASES[case]
    assert platforms.detect(url, page(name, url)) == platform
    assert platforms.adapter(platform).is_product_url(url)


def test_detection_from_markup_alone_on_a_neutral_host() -> None:
    url = "https://shop.example.org/somewhere"
    assert platforms.detect(url) is None
    for platform, name in [("cafe24", "cafe24/product_detail.html"), ("godomall", "godomall/goods_view.html"),
                           ("makeshop", "makeshop/shopdetail.html"), ("imweb", "imweb/product.html"),
                           ("smartstore", "smartstore/product_shell.html")]:
        assert platforms.detect(url, page(name, url)) == platform, name


def test_detection_from_product_links() -> None:
    body = '<html><body><a href="/goods/goods_view.php?goodsNo=1">a</a><a href="/goods/goods_view.php?goodsNo=2">b</a></body></html>'
    assert platforms.detect("http://127.0.0.1:9/", HtmlResponse("http://127.0.0.1:9/", body=body.encode(), encoding="utf-8")) == "godomall"


@pytest.mark.parametrize(
    ("platform", "url", "canonical"),
    [
        ("godomall", "https://A.example.com/goods/goods_view.php?goodsNo=5&mtn=1#x", "https://a.example.com/goods/goods_view.php?goodsNo=5"),
        ("godomall", "http://old.example.com/shop/goods/goods_view.php?goodsno=77&category=001",
         "http://old.example.com/shop/goods/goods_view.php?goodsno=77"),
        ("makeshop", "https://m.example.com/shop/shopdetail.html?branduid=9&xcode=001&mcode=002&scode=&type=X",
         "https://m.example.com/shop/shopdetail.html?branduid=9"),
        ("imweb", "https://i.example.com/shop_view?idx=45&cate=1", "https://i.example.com/shop_view/?idx=45"),
        ("smartstore", "https://smartstore.naver.com/summershop/products/8123456789?NaPm=ct", "https://smartstore.naver.com/summershop/products/8123456789"),
        ("11st", "https://www.11st.co.kr/products/3845017291?trTypeCd=22", "https://www.11st.co.kr/products/3845017291"),
        ("gmarket", "http://item.gmarket.co.kr/Item?goodscode=2901234567&ver=1", "http://item.gmarket.co.kr/Item?goodscode=2901234567"),
    ],
)
def test_canonical_product_urls(platform: str, url: str, canonical: str) -> None:
    assert platforms.adapter(platform).canonical_product_url(url) == canonical


@pytest.mark.parametrize(
    ("platform", "url"),
    [
        ("cafe24", "https://c.example.com/product/detail.html?product_no=1%C2%B2"),
        ("godomall", "https://g.example.com/goods/goods_view.php?goodsNo=%C2%B2"),
        ("makeshop", "https://m.example.com/shop/shopdetail.html?branduid=3%C2%B9"),
        ("imweb", "https://i.example.com/shop_view/?idx=%C2%B2"),
        ("gmarket", "http://item.gmarket.co.kr/Item?goodscode=%C2%B2"),
        ("cafe24", "https://c.example.com/product/detail.html?PRODUCT_NO=11"),
        ("godomall", "https://g.example.com/goods/goods_list.php?goodsNo=5"),
        ("11st", "https://www.11st.co.kr/products/12/pc-desc"),
    ],
)
def test_links_that_only_look_like_products_are_not_products(platform: str, url: str) -> None:
    """Digits that are not decimal (``²``) once crashed a listing's links and detection; other parameters and paths are not products."""
    adapter = platforms.adapter(platform)
    assert adapter.product_no(url) is None and not adapter.is_product_url(url)
    with pytest.raises(ValueError, match="^not an? .+ product URL: ") as raised:
        adapter.canonical_product_url(url)
    assert repr(url) in str(raised.value)
    listing = HtmlResponse("https://c.example.com/", body=f'<a href="{url}">x</a><a href="/product/detail.html?product_no=7">y</a>'.encode(),
                           encoding="utf-8")
    assert platforms.detect(listing.url, listing) == "cafe24"
    assert platforms.adapter("cafe24").listing_links(listing).products == ["https://c.example.com/product/detail.html?product_no=7"]


def test_iframe_platforms_follow_the_detail_frame() -> None:
    eleven = platforms.adapter("11st")
    product = page("11st/product.html", "https://www.11st.co.kr/products/3845017291")
    assert eleven.iframe_url(product) == "https://www.11st.co.kr/products/3845017291/pc-desc?prdNo=3845017291"
    frame = page("11st/desc.html", "https://www.11st.co.kr/products/3845017291/pc-desc?prdNo=3845017291")
    assert eleven.frame_detail_images(frame) == [
        "https://gi.esmplus.com/stripe/onepiece_01.jpg", "https://gi.esmplus.com/stripe/onepiece_02.jpg", "https://www.11st.co.kr/img/notice_11st.jpg"]
    gmarket = platforms.adapter("gmarket")
    item = page("gmarket/item.html", "https://item.gmarket.co.kr/Item?goodscode=2901234567")
    assert gmarket.iframe_url(item) == "https://item.gmarket.co.kr/Item/DetailView/Item.aspx?goodscode=2901234567"
    detail = page("gmarket/detail.html", "https://item.gmarket.co.kr/Item/DetailView/Item.aspx?goodscode=2901234567")
    assert gmarket.frame_detail_images(detail) == ["https://gi.esmplus.com/bedland/linen_01.jpg", "https://gi.esmplus.com/bedland/linen_02.jpg"]


def test_makeshop_block_page_is_a_reason() -> None:
    makeshop = platforms.adapter("makeshop")
    blocked = page("makeshop/blocked.html", "https://m.example.com/shop/shopdetail.html?branduid=1")
    assert "403page" in makeshop.blocked_reason(blocked)
    assert makeshop.blocked_reason(page("makeshop/shopdetail.html", "https://m.example.com/shop/shopdetail.html?branduid=1")) is None


def test_smartstore_shell_without_rendering_has_no_detail_images() -> None:
    data = platforms.adapter("smartstore").extract_product(
        page("smartstore/product_shell.html", "https://smartstore.naver.com/summershop/products/8123456789"))
    assert data["title"] == "리넨 반팔 셔츠" and data["detail_images"] == []
    assert data["product_images"] == ["https://shop-phinf.pstatic.net/20240601_1/linen_main.jpg"]
    assert data["seller"]["channel_uid"] == "2sWDw6fZMrHr7xQ9AbCdE"
    assert platforms.adapter("smartstore").NEEDS_BROWSER


@pytest.mark.parametrize("url", ["https://www.coupang.com/vp/products/123", "https://coupang.com/", "http://m.coupang.com/x"])
def test_coupang_is_refused(url: str) -> None:
    assert "robots.txt" in platforms.refused_reason(url)
    assert platforms.refused_reason("https://notcoupang.com/") is None


def test_coupang_refused_by_the_spider() -> None:
    from crawler.spiders.shop import ShopSpider

    with pytest.raises(ValueError, match="refusing to crawl .*Coupang"):
        ShopSpider(start_url="https://www.coupang.com/np/categories/1", seen="2024-06-02")


def test_unknown_platform_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown platform"):
        platforms.adapter("coupang")
    assert platforms.PLATFORMS == ("cafe24", "godomall", "makeshop", "imweb", "smartstore", "11st", "gmarket", "generic")


def test_generic_rules_are_validated(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("shops:\n  - host: x.example\n    title: h1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="product_url"):
        generic.load_rules(bad)


def test_crawled_text_stays_data() -> None:
    body = ('<html><body><h1 class="view_tit">&lt;script&gt;alert(1)&lt;/script&gt;</h1>'
            '<div id="doz_footer">상호 : <b>../../etc/passwd</b></div></body></html>')
    data = platforms.adapter("imweb").extract_product(HtmlResponse("https://i.example.com/s/?idx=1", body=body.encode(), encoding="utf-8"))
    assert data["title"] == "<script>alert(1)</script>" and data["seller"]["company"] == "../../etc/passwd"
