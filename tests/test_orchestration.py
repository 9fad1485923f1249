"""Orchestration against the demo mall: the daily, gallery and backfill DAGs through dag.test(),
retried matching, rematch without HTTP, and the report e-mailed to a local SMTP server."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select

REPO = Path(__file__).resolve().parent.parent
SEOUL = ZoneInfo("Asia/Seoul")
DAY = date(2026, 11, 26)
HELD_BACK = "gallery/photos/mh01-gray_main.jpg"  # copied (mirrored, watermarked) at mall-b 211; added after the crawl
pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        from email import message_from_bytes
        from email.policy import default

        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=default)))
        return "250 OK"


def finding_rows(settings) -> list[tuple]:
    """Every finding with what identifies and describes it (ids excluded), sorted."""
    from pipeline.db import Database, Finding, FindingSighting, GalleryImage, Image, Page

    db = Database(settings.database_url)
    try:
        with db.session() as s:
            rows = s.execute(
                select(Finding, GalleryImage.label, Image.sha256, Page.url)
                .join(GalleryImage, GalleryImage.id == Finding.gallery_image_id)
                .join(Image, Image.id == Finding.image_id)
                .join(Page, Page.id == Finding.page_id)
            ).all()
            sightings = s.scalar(select(func.count()).select_from(FindingSighting))
            out = sorted(
                (label, sha, url, round(f.score, 6), tuple(f.suspect_box), tuple(f.gallery_box), f.first_seen, f.last_seen, f.first_run_id, f.last_run_id)
                for f, label, sha, url in rows
            )
            return out + [("sightings", sightings)]
    finally:
        db.dispose()


def run_stats(settings, run_id: int) -> dict:
    from pipeline.db import Database, Run

    db = Database(settings.database_url)
    try:
        with db.session() as s:
            return dict(s.get(Run, run_id).stats)
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db):
    """The demo mall, a client whose gallery lacks one protected page, an SMTP inbox, and one
    daily run through copywatch_daily's dag.test()."""
    from aiosmtpd.controller import Controller
    from airflow.dag_processing.dagbag import DagBag

    from crawler.demo.build import build_demo
    from crawler.demo.seed import seed_demo
    from crawler.demo.server import DemoMall
    from pipeline.config import load_settings

    tmp = tmp_path_factory.mktemp("orch")
    home = tmp / "cw"
    inbox = Inbox()
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("COPYWATCH_HOME", str(home))
    mp.setenv("COPYWATCH_DATABASE_URL", f"sqlite:///{home / 'copywatch.db'}")
    mp.setenv("COPYWATCH_EMBEDDER", "default")
    mp.setenv("COPYWATCH_SCRAPY_SETTINGS", '{"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": false}')
    mp.setenv("COPYWATCH_SMTP_HOST", "127.0.0.1")
    mp.setenv("COPYWATCH_SMTP_PORT", str(smtp_port))
    mp.setenv("COPYWATCH_SMTP_FROM", "copywatch@example.invalid")
    mp.setenv("COPYWATCH_RECIPIENTS_HANBIT", "legal@hanbit.example, ops@hanbit.example")
    mp.setenv("COPYWATCH_AIRFLOW_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    mp.delenv("COPYWATCH_TEST_FAIL_AFTER_FINDINGS", raising=False)
    settings = load_settings()
    demo_dir = tmp / "demo"
    manifest = build_demo(demo_dir)
    seeded = json.loads(json.dumps(manifest))
    seeded["client"]["gallery"] = [g for g in manifest["client"]["gallery"] if g != HELD_BACK]
    bag = DagBag(dag_folder=str(REPO / "dags"))
    mall = DemoMall(demo_dir).start()
    try:
        seed_demo(settings, seeded, demo_dir, mall.base_urls)
        started = time.monotonic()
        dr = bag.dags["copywatch_daily"].test(logical_date=datetime(2026, 11, 26, 6, 0, tzinfo=SEOUL))
        wall = time.monotonic() - started
        log.warning("copywatch_daily on the demo mall: %.1f s wall time (dag.test)", wall)
        yield {"settings": settings, "mall": mall, "manifest": manifest, "demo_dir": demo_dir, "bag": bag, "inbox": inbox,
               "daily_state": str(dr.state), "daily_wall_s": wall}
    finally:
        mall.stop()
        controller.stop()
        mp.undo()


def daily_run_id(settings, day: date) -> int:
    from pipeline.stages import runs_between

    (run_id,) = runs_between(settings, day, day)
    return run_id


def test_daily_dag_records_every_stage_and_mails_the_report(world):
    from pipeline.db import Database, Report

    settings = world["settings"]
    assert world["daily_state"].endswith("success"), world["daily_state"]
    run_id = daily_run_id(settings, DAY)
    stats = run_stats(settings, run_id)
    # Counts per stage: crawl (per target and summed), the embedding plan and batches, matching, evidence and notification.
    assert stats["crawl"]["pages"] > 0 and stats["crawl"]["images"] > 0
    assert stats["plan"]["embed_batches"] >= 2, stats["plan"]
    batches = [k for k in stats if k.startswith("embed:")]
    assert len(batches) == stats["plan"]["embed_batches"]
    assert stats["embed"]["images"] == stats["plan"]["images"]
    rows = finding_rows(settings)[:-1]
    assert stats["match:hanbit"]["findings"] == stats["match:hanbit"]["new_findings"] == len(rows) >= 2
    assert stats["report:hanbit"]["findings"] == len(rows)
    # Evidence: the pages of the findings were screenshot between matching and the report.
    assert stats["evidence:hanbit"]["enabled"] and stats["evidence:hanbit"]["failed"] == 0
    assert stats["evidence:hanbit"]["captured"] == stats["evidence:hanbit"]["pages"] >= 1
    assert stats["notify:hanbit"]["status"] == "sent" and stats["notify:hanbit"]["recipients"] == 2
    # Which planted copies are found is test_e2e's business; the held-back photo is not in the gallery yet.
    assert "mh01-gray_main.jpg" not in {label for label, *_ in rows}
    # The e-mail with the report reached the local SMTP server.
    (rcpts, msg), = world["inbox"].messages
    assert sorted(rcpts) == ["legal@hanbit.example", "ops@hanbit.example"]
    db = Database(settings.database_url)
    with db.session() as s:
        report_path = Path(s.scalar(select(Report.path).where(Report.run_id == run_id)))
    db.dispose()
    html_body = msg.get_body(("html",)).get_content().replace("\r\n", "\n").strip()
    assert html_body == report_path.read_text(encoding="utf-8").strip()
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "report.html"
    assert attachment.get_content().replace("\r\n", "\n").strip() == html_body
    assert "2026-11-26" in msg["Subject"]


def test_airflow_backfill_create_takes_the_data_interval(world):
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "backfill", "create", "--dag-id", "copywatch_daily",
         "--from-date", "2026-11-20", "--to-date", "2026-11-22", "--dry-run"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    # Logical dates are data-interval starts, 06:00 Asia/Seoul (21:00 UTC the day before), from..to.
    for start in ("2026-11-19 21:00:00+00:00", "2026-11-20 21:00:00+00:00"):
        assert start in out, out[-2000:]
    assert "2026-11-21 21:00:00+00:00" not in out


def test_match_killed_midway_then_retried_equals_uninterrupted(world, monkeypatch):
    from pipeline.db import Database, Finding, FindingSighting
    from pipeline.stages import FAIL_AFTER_FINDINGS_ENV, match_run

    settings = world["settings"]
    run_id = daily_run_id(settings, DAY)
    uninterrupted = finding_rows(settings)
    stats_before = run_stats(settings, run_id)["match:hanbit"]
    n = len(uninterrupted) - 1
    assert n >= 2

    db = Database(settings.database_url)
    with db.session() as s:
        s.execute(delete(FindingSighting))
        s.execute(delete(Finding))
    monkeypatch.setenv(FAIL_AFTER_FINDINGS_ENV, "1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        match_run(settings, run_id, "hanbit")
    with db.session() as s:
        partial = s.scalar(select(func.count()).select_from(Finding))
    db.dispose()
    assert 1 <= partial < n, partial  # the killed try left some findings behind

    monkeypatch.delenv(FAIL_AFTER_FINDINGS_ENV)
    match_run(settings, run_id, "hanbit")  # the retry
    assert finding_rows(settings) == uninterrupted
    log.warning("idempotence: uninterrupted %d findings / %d sightings; killed try left %d; retry %d findings / %d sightings; stats %s",
                n, uninterrupted[-1][1], partial, len(finding_rows(settings)) - 1, finding_rows(settings)[-1][1],
                run_stats(settings, run_id)["match:hanbit"])
    assert run_stats(settings, run_id)["match:hanbit"] == stats_before


def test_matching_in_worker_processes_equals_matching_in_one(world, caplog):
    """The daily run ranks a run's images in forked workers; the findings and counts are those of
    one process ranking them all."""
    from pipeline.db import Database, Finding, FindingSighting
    from pipeline.stages import match_run

    settings = world["settings"]
    run_id = daily_run_id(settings, DAY)
    expected, stats = finding_rows(settings), run_stats(settings, run_id)["match:hanbit"]
    assert len(expected) >= 3
    db = Database(settings.database_url)
    try:
        for workers, how in ((1, "(in this process)"), (2, "(2 worker processes)")):
            with db.session() as s:
                s.execute(delete(FindingSighting))
                s.execute(delete(Finding))
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="pipeline.stages"):
                match_run(settings.with_(match_workers=workers), run_id, "hanbit")
            assert any(how in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
            assert finding_rows(settings) == expected
            assert run_stats(settings, run_id)["match:hanbit"] == stats
    finally:
        db.dispose()


def test_a_stored_file_damaged_after_embedding_is_a_recorded_skip_of_matching(world):
    """A suspect image whose stored file went bad between the embed and match stages: the worker
    reports it, the task records the skip with its reason and matches the rest."""
    from pipeline.db import Database, Finding, Image, Skip
    from pipeline.stages import match_run, run_links
    from pipeline.store import ContentStore

    settings = world["settings"]
    run_id = daily_run_id(settings, DAY)
    expected, stats = finding_rows(settings), run_stats(settings, run_id)["match:hanbit"]
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            with_findings = set(s.scalars(select(Finding.image_id)))
            run_images = sorted({i for _, i in run_links(s, settings, run_id)} - with_findings)
            sha = s.get(Image, run_images[0]).sha256
        path = ContentStore(settings.store_dir).path(sha)
        original = path.read_bytes()
        path.write_bytes(original[:300])  # truncated on disk
        try:
            match_run(settings.with_(match_workers=2), run_id, "hanbit")
            with db.session() as s:
                skip = s.scalar(select(Skip).where(Skip.run_id == run_id, Skip.stage == "match", Skip.subject == sha))
            assert skip is not None and skip.reason.startswith("stored file unusable: corrupt or truncated image"), skip
            assert run_stats(settings, run_id)["match:hanbit"]["images"] == stats["images"] - 1
            assert finding_rows(settings) == expected
        finally:
            path.write_bytes(original)
            with db.session() as s:
                s.execute(delete(Skip).where(Skip.run_id == run_id, Skip.stage == "match", Skip.subject == sha))
        match_run(settings, run_id, "hanbit")
        assert run_stats(settings, run_id)["match:hanbit"] == stats
    finally:
        db.dispose()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_gallery_add_then_gallery_dag_rematches_without_http(world):
    from airflow.models.asset import AssetEvent
    from airflow.settings import Session as AirflowSession

    from pipeline.airflow_events import emit_gallery_changed
    from pipeline.cli import main

    settings, mall = world["settings"], world["mall"]
    run_id = daily_run_id(settings, DAY)
    before = finding_rows(settings)
    mall.clear_requests()

    # `copywatch gallery add` works with Airflow unreachable, and says when the rebuild happens.
    records = Records()
    events_log = logging.getLogger("pipeline.airflow_events")
    events_log.addHandler(records)
    try:
        assert main(["gallery", "add", "hanbit", str(world["demo_dir"] / HELD_BACK)]) == 0
    finally:
        events_log.removeHandler(records)
    assert any("next daily run" in m for m in records.messages), records.messages
    # With Airflow's database at hand (the API server down), the event is recorded there.
    env = dict(os.environ)  # conftest points Airflow at the test metadata database
    assert emit_gallery_changed(settings, "hanbit", {"added": 1}, env=env) == "db"
    session = AirflowSession()
    events = session.scalars(select(AssetEvent)).all()
    assert any(e.extra.get("client") == "hanbit" for e in events)
    session.close()

    started = time.monotonic()
    dr = world["bag"].dags["copywatch_gallery"].test(
        logical_date=None, run_after=datetime(2026, 11, 27, 9, 0, tzinfo=SEOUL), run_conf={"clients": ["hanbit"]}
    )
    log.warning("copywatch_gallery: %.1f s wall time", time.monotonic() - started)
    assert str(dr.state).endswith("success")
    assert mall.requests == []  # not one HTTP request

    after = finding_rows(settings)
    new = [r for r in after[:-1] if r not in before[:-1]]
    assert [(r[0], r[2].rsplit("product_no=", 1)[-1]) for r in new] == [("mh01-gray_main.jpg", "211")]
    assert new[0][6] == DAY and new[0][8] == run_id  # dated by the earlier crawl
    stats = run_stats(settings, run_id)["match:hanbit"]
    log.warning("rematch: %d findings before, %d after; match stats %s; %d HTTP requests", len(before) - 1, len(after) - 1, stats, len(mall.requests))
    assert stats["new_findings"] == len(after) - 1 == len(before)
    from pipeline.db import Database, Report

    db = Database(settings.database_url)
    with db.session() as s:
        report = s.scalar(select(Report).where(Report.run_id == run_id))
    db.dispose()
    # The report lists every finding last seen in that run; one the rematch no longer produces
    # (explained now by the better, added protected image) stays listed: findings are never deleted.
    assert report.n_findings == len(after) - 1


def test_backfill_dag_rematch_mode_regenerates_reports_without_http(world):
    from pipeline.db import Database, Report

    settings, mall = world["settings"], world["mall"]
    run_id = daily_run_id(settings, DAY)
    before = finding_rows(settings)
    db = Database(settings.database_url)
    with db.session() as s:
        report = s.scalar(select(Report).where(Report.run_id == run_id))
    Path(report.path).unlink()
    mall.clear_requests()
    dr = world["bag"].dags["copywatch_backfill"].test(
        logical_date=None, run_conf={"start": "2026-11-20", "end": "2026-11-26", "mode": "rematch", "clients": ["hanbit"]}
    )
    assert str(dr.state).endswith("success")
    assert mall.requests == []
    assert finding_rows(settings) == before
    assert Path(report.path).exists()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Report)) == 1
    db.dispose()
