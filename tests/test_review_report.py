"""Tests of the deepened report: new/ongoing/resolved, evidence fields, trend, exports, suppression, tenant isolation."""
from __future__ import annotations

import csv
import re

import pandas as pd
import pytest
from PIL import Image as PILImage

from pipeline.analysts import add_analyst
from pipeline.db import Finding, Image, PageImage
from pipeline.repo import get_client
from pipeline.review import allowlist_add, decide, get_finding
from pipeline.store import ContentStore
from reports import appcore
from reports.export import COLUMNS
from reports.i18n import STRINGS
from reports.render import render_client_report
from reviewdata import (
    BIZ_NUMBER, BIZ_URL, COPY_URL, GONE_URL, HOSTILE_SELLER, HOSTILE_TITLE, OTHER_URL, PARTNER_URL, PASSWORD, build_world,
    photo, png, stacked,
)


@pytest.fixture()
def world(cw_home):
    w = build_world(cw_home)
    yield w
    w.db.dispose()


def _html(world, run_id: int, slug: str = "acme", language: str | None = None) -> str:
    return render_client_report(world.settings, run_id, slug, language=language).read_text(encoding="utf-8")


def _cards(html: str) -> set[int]:
    return {int(x) for x in re.findall(r'id="finding-(\d+)"', html)}


def _stat(html: str, key: str, language: str = "ko") -> int:
    m = re.search(r'<span class="n">(\d+)</span><span class="l">' + re.escape(STRINGS[language][key]), html)
    assert m, key
    return int(m.group(1))


def test_new_ongoing_resolved_since_last_report(world) -> None:
    first = _html(world, world.run1)
    assert STRINGS["ko"]["first_report"] in first
    html = _html(world, world.run2)
    f = world.findings
    assert _cards(html) == {f["copy"], f["ongoing"], f["partner"], f["biz"]}
    assert (_stat(html, "findings_new"), _stat(html, "findings_ongoing"), _stat(html, "findings_resolved")) == (3, 1, 1)
    resolved = html[html.index('id="resolved"'):html.index('id="skipped"')]
    assert GONE_URL in resolved and str(f["gone"]) in resolved
    assert "2024-05-02" in html[html.index('id="summary"'):html.index('id="trend"')]


def test_evidence_fields_and_escaping_korean(world) -> None:
    html = _html(world, world.run2)
    assert '<html lang="ko">' in html
    card = html[html.index(f'id="finding-{world.findings["copy"]}"'):]
    card = card[:card.index("</article>")]
    for text in ("19,900원", "도둑상회", "123-45-67890", "0.91", "90%", "2024-05-03", "2024-05-03 06:09 KST", world.screenshot_sha256,
                 "https://copy.example/img/", "ab" * 32, "acme-00.png"):
        assert text in card, text
    with world.db.session() as s:
        copy_page = s.get(Finding, world.findings["copy"]).page_id
    assert f'src="thumbs/p{copy_page}-screenshot.jpg"' in card and STRINGS["ko"]["screenshot_none"] not in card
    other_card = html[html.index(f'id="finding-{world.findings["biz"]}"'):]
    other_card = other_card[:other_card.index("</article>")]
    assert STRINGS["ko"]["screenshot_none"] in other_card and "2024-05-03 06:07 KST" in other_card
    with world.db.session() as s:
        sha = s.get(Image, s.get(Finding, world.findings["copy"]).image_id).sha256
    assert sha in card
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;b&gt;복사몰&lt;/b&gt;" in html and "<b>복사몰</b>" not in html
    assert "HTTP 404 &lt;i&gt;gone&lt;/i&gt;" in html
    assert '<a href="report.csv">' in html and '<a href="report.xlsx">' in html


def test_english_setting(world) -> None:
    html = _html(world, world.run2, language="en")
    assert '<html lang="en">' in html
    for key in ("findings_resolved", "trend", "capture_time", "screenshot_none", "suspect_image_url", "sha_suspect"):
        assert STRINGS["en"][key] in html, key
    assert STRINGS["ko"]["trend"] not in html
    assert "&lt;script&gt;" in html and "<script" not in html.lower()


def test_trend_chart_counts_per_day(world) -> None:
    html = _html(world, world.run2)
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert "<title>2024-05-02: 2</title>" in svg and "<title>2024-05-03: 4</title>" in svg
    assert svg.count('class="bar"') == 14


def test_suppressed_findings_stay_out_until_the_image_changes(world) -> None:
    f = world.findings
    with world.db.session() as s:
        decide(s, get_finding(s, f["copy"]), "dismiss", "kim", "false match")
        acme = get_client(s, "acme")
        allowlist_add(s, acme, domain="partner.example")
        allowlist_add(s, acme, business_number=BIZ_NUMBER)
    html = _html(world, world.run2)
    assert _cards(html) == {f["ongoing"]}
    assert COPY_URL.replace("&", "&amp;") in html  # the ongoing finding is on the same page
    assert PARTNER_URL not in html and BIZ_URL not in html
    # The thief swaps in another file: another suspect image, so another finding, which is reported.
    store = ContentStore(world.settings.store_dir)
    with world.db.session() as s:
        old = s.get(Finding, f["copy"])
        sha, _ = store.put(png(stacked([photo(77), world.gallery_images[0]])))
        img = Image(sha256=sha, size_bytes=1, width=240, height=640, status="ok", first_seen=old.first_seen)
        s.add(img)
        s.flush()
        s.add(PageImage(page_id=old.page_id, image_id=img.id, role="detail", position=999, url="https://copy.example/img/new.png", last_run_id=world.run2))
        changed = Finding(client_id=old.client_id, image_id=img.id, gallery_image_id=old.gallery_image_id, page_id=old.page_id, score=0.9,
                          suspect_box=[0, 320, 240, 640], gallery_box=[0, 0, 240, 320], overlap=0.9, evidence={}, status="new",
                          first_seen=old.last_seen, last_seen=old.last_seen, first_run_id=world.run2, last_run_id=world.run2)
        s.add(changed)
        s.flush()
        changed_id = changed.id
    assert _cards(_html(world, world.run2)) == {f["ongoing"], changed_id}


def test_csv_and_xlsx_exports(world) -> None:
    path = render_client_report(world.settings, world.run2, "acme")
    csv_path, xlsx_path = path.parent / "report.csv", path.parent / "report.xlsx"
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")
    with csv_path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMNS
    f = world.findings
    assert sorted(int(r["finding_id"]) for r in rows) == sorted([f["copy"], f["ongoing"], f["partner"], f["biz"]])
    copy = next(r for r in rows if int(r["finding_id"]) == f["copy"])
    assert copy["page_url"] == COPY_URL and copy["shop"] == "<b>복사몰</b>" and copy["seller_company"] == "도둑상회"
    assert copy["seller_business_number"] == "123-45-67890" and copy["price"] == "19,900원"
    assert copy["first_seen"] == "2024-05-03" and copy["capture_time"] == "2024-05-03 06:09 KST"
    assert copy["screenshot_sha256"] == world.screenshot_sha256
    assert copy["product_title"] == HOSTILE_TITLE and copy["seller_representative"] == HOSTILE_SELLER
    assert copy["seller_email"].startswith("'="), "formula injection is neutralised"
    assert len(copy["suspect_sha256"]) == 64 and len(copy["protected_sha256"]) == 64
    assert copy["suspect_image_url"].startswith("https://copy.example/img/")
    xlsx = pd.read_excel(xlsx_path, sheet_name="findings", dtype=str)
    assert list(xlsx.columns) == list(COLUMNS)
    assert sorted(xlsx["finding_id"].astype(int)) == sorted(int(r["finding_id"]) for r in rows)
    x = xlsx[xlsx["finding_id"].astype(int) == f["copy"]].iloc[0]
    assert x["page_url"] == COPY_URL and x["seller_email"].startswith("'=") and x["suspect_sha256"] == copy["suspect_sha256"]


def test_cross_tenant_report_export_search_queue(world) -> None:
    acme_html, other_html = _html(world, world.run2, "acme"), _html(world, world.run2, "other")
    assert OTHER_URL not in acme_html and "Other Brand" not in acme_html and "other-0.png" not in acme_html
    assert _cards(other_html) == {world.findings["other"]}
    assert COPY_URL.replace("&", "&amp;") not in other_html and "acme-0" not in other_html
    reports = world.settings.reports_dir
    acme_csv = (reports / "acme" / "2024-05-03" / "report.csv").read_text(encoding="utf-8-sig")
    other_csv = (reports / "other" / "2024-05-03" / "report.csv").read_text(encoding="utf-8-sig")
    assert OTHER_URL not in acme_csv and "other-0.png" not in acme_csv
    assert COPY_URL not in other_csv and "acme-0" not in other_csv and OTHER_URL in other_csv
    with world.db.session() as s:
        add_analyst(s, "kim", PASSWORD, ["acme"])
    who = appcore.sign_in(world.db, "kim", PASSWORD)
    assert appcore.client_choices(world.db, who) == [("acme", "에이크미 <주식회사>")]
    with pytest.raises(LookupError):
        appcore.queue(world.db, who, "other")
    assert world.findings["other"] not in {r["id"] for r in appcore.queue(world.db, who, "acme", None)}
    with pytest.raises(LookupError):
        appcore.review(world.db, who, world.findings["other"], "dismiss")
    with pytest.raises(LookupError):
        appcore.detail(world.db, world.settings, who, "acme", world.findings["other"])
    with pytest.raises(LookupError):
        appcore.search(world.db, world.settings, who, "other", png(photo(500)))
    _, hits = appcore.search(world.db, world.settings, who, "acme", png(photo(500)))
    assert all(h.label.startswith("acme-") for h, _ in hits)
    with world.db.session() as s:
        assert s.get(Finding, world.findings["other"]).status == "new"


def test_app_core_search_queue_review_detail(world) -> None:
    with world.db.session() as s:
        add_analyst(s, "kim", PASSWORD, ["acme"])
    assert appcore.sign_in(world.db, "kim", "wrong password!") is None
    who = appcore.sign_in(world.db, "kim", PASSWORD)
    query, hits = appcore.search(world.db, world.settings, who, "acme", png(stacked(world.gallery_images[3:6])))
    assert len(hits) == 10 and [h.rank for h, _ in hits] == list(range(1, 11))
    assert hits[0][0].label in {"acme-03.png", "acme-04.png", "acme-05.png"} and hits[0][0].score > 0.5
    assert hits[0][0].gallery_box and all(isinstance(t, PILImage.Image) for _, t in hits)
    d = appcore.review(world.db, who, world.findings["copy"], "confirm", "seen")
    assert (d["decision"], d["analyst"]) == ("confirmed", "kim")
    assert world.findings["copy"] not in {r["id"] for r in appcore.queue(world.db, who, "acme")}
    detail = appcore.detail(world.db, world.settings, who, "acme", world.findings["copy"])
    assert detail.facts["status"] == "confirmed" and detail.audit[0]["note"] == "seen"
    assert detail.protected is not None and detail.suspect is not None
    assert appcore.add_to_allowlist(world.db, who, "acme", "domain", "partner.example") == 1
    assert appcore.allowlist(world.db, who, "acme")[0]["value"] == "partner.example"


def test_sign_in_throttled_after_repeated_failures(world) -> None:
    with world.db.session() as s:
        add_analyst(s, "kim", PASSWORD, ["acme"])
    now = [0.0]
    throttle = appcore.SignInThrottle(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert appcore.sign_in(world.db, "kim", "wrong password!", throttle) is None
    assert appcore.sign_in(world.db, "kim", PASSWORD, throttle) is None, "locked after 3 failures"
    now[0] = 61.0
    assert appcore.sign_in(world.db, "kim", PASSWORD, throttle).name == "kim"
