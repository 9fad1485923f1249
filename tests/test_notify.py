"""Report e-mails: recipients from config, delivery to a local SMTP server, failures recorded and retried."""
from __future__ import annotations

import json
import socket
from datetime import datetime

import pytest
from sqlalchemy import select


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        from email import message_from_bytes
        from email.policy import default

        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=default)))
        return "250 OK"


@pytest.fixture
def rendered(cw_home):
    """A client, a run and a (hand-made) rendered report of it."""
    from pipeline.db import Database, Report
    from pipeline.repo import upsert_client, upsert_run, utcnow

    settings = cw_home
    path = settings.reports_dir / "hanbit" / "2026-11-26" / "report.html"
    path.parent.mkdir(parents=True)
    path.write_text("<html><body><h1>한빛 보고서</h1><p>3 findings</p></body></html>", encoding="utf-8")
    db = Database(settings.database_url)
    with db.session() as s:
        client = upsert_client(s, "hanbit", "한빛")
        run = upsert_run(s, "daily", datetime(2026, 11, 24, 21), datetime(2026, 11, 25, 21))
        s.add(Report(client_id=client.id, run_id=run.id, path=str(path), n_findings=3, created_at=utcnow()))
        run_id = run.id
    db.dispose()
    return settings, run_id, path


def _stats_and_skips(settings, run_id):
    from pipeline.db import Database, Run, Skip

    db = Database(settings.database_url)
    with db.session() as s:
        stats = dict(s.get(Run, run_id).stats)
        skips = [(k.stage, k.subject, k.reason) for k in s.scalars(select(Skip).where(Skip.run_id == run_id))]
    db.dispose()
    return stats, skips


def test_recipients_from_env_or_json(cw_home):
    from reports.notify import recipients_for

    (cw_home.home / "recipients.json").write_text(json.dumps({"hanbit": ["a@x.example"], "blue-sky": "b@x.example"}), encoding="utf-8")
    assert recipients_for(cw_home, "hanbit", env={}) == ["a@x.example"]
    assert recipients_for(cw_home, "blue-sky", env={}) == ["b@x.example"]
    assert recipients_for(cw_home, "blue-sky", env={"COPYWATCH_RECIPIENTS_BLUE_SKY": "c@x.example, d@x.example"}) == ["c@x.example", "d@x.example"]
    assert recipients_for(cw_home, "nobody", env={}) == []


def test_failed_delivery_is_recorded_and_the_retry_sends_once(rendered, monkeypatch):
    from aiosmtpd.controller import Controller

    from reports.notify import SmtpSettings, notify_client

    settings, run_id, path = rendered
    monkeypatch.setenv("COPYWATCH_RECIPIENTS_HANBIT", "legal@hanbit.example")
    port = free_port()
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="copywatch@example.invalid", timeout=5)

    # Attempt 1: the SMTP server is down: recorded, then raised for Airflow to retry.
    with pytest.raises(OSError):
        notify_client(settings, run_id, "hanbit", smtp=smtp, attempt=1)
    stats, skips = _stats_and_skips(settings, run_id)
    assert stats["notify:hanbit"]["status"] == "failed" and stats["notify:hanbit"]["attempts"] == 1
    assert [(st, subj) for st, subj, _ in skips] == [("notify", "hanbit")] and "attempt 1" in skips[0][2]

    # Attempt 2: the server is up: the report arrives, as HTML body and attachment.
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = notify_client(settings, run_id, "hanbit", smtp=smtp, attempt=2)
        assert out["status"] == "sent" and out["attempts"] == 2 and len(out["failures"]) == 1
        again = notify_client(settings, run_id, "hanbit", smtp=smtp, attempt=3)  # a re-run sends nothing twice
        assert again == out
    finally:
        controller.stop()
    (rcpts, msg), = inbox.messages
    assert rcpts == ["legal@hanbit.example"]
    assert "한빛 보고서" in msg.get_body(("html",)).get_content()
    assert "한빛" in msg["Subject"]
    (att,) = list(msg.iter_attachments())
    assert att.get_filename() == "report.html" and "한빛 보고서" in att.get_content()
    stats, _ = _stats_and_skips(settings, run_id)
    assert stats["notify:hanbit"]["status"] == "sent"


def test_without_recipients_or_smtp_nothing_is_sent_and_a_skip_is_recorded(rendered, monkeypatch):
    from reports.notify import SmtpSettings, notify_client

    settings, run_id, _ = rendered
    monkeypatch.delenv("COPYWATCH_RECIPIENTS_HANBIT", raising=False)
    out = notify_client(settings, run_id, "hanbit", smtp=SmtpSettings(host="127.0.0.1", port=free_port()))
    assert out["status"] == "skipped"
    _, skips = _stats_and_skips(settings, run_id)
    assert skips[0][2] == "no recipients configured"
