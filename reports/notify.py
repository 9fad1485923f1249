"""Notifications: e-mail each client's rendered report to its recipients over SMTP."""
from __future__ import annotations

import json
import logging
import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import select

from pipeline.config import Settings
from pipeline.db import Database, Report, Run
from pipeline.repo import get_client, record_skip, run_date, set_run_stats

log = logging.getLogger(__name__)

#: The Airflow connection read when the COPYWATCH_SMTP_* variables are not set.
SMTP_CONN_ID = "copywatch_smtp"


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send: host, port, optional login, the From address, TLS mode."""

    host: str
    port: int = 25
    user: str | None = None
    password: str | None = None
    sender: str = "copywatch@localhost"
    #: "none", "starttls" or "ssl".
    tls: str = "none"
    timeout: float = 30.0


def smtp_from_env(env: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """SMTP settings from COPYWATCH_SMTP_HOST/PORT/USER/PASSWORD/FROM/TLS; None without a host."""
    env = os.environ if env is None else env
    host = env.get("COPYWATCH_SMTP_HOST")
    if not host:
        return None
    return SmtpSettings(
        host=host,
        port=int(env.get("COPYWATCH_SMTP_PORT", "25")),
        user=env.get("COPYWATCH_SMTP_USER") or None,
        password=env.get("COPYWATCH_SMTP_PASSWORD") or None,
        sender=env.get("COPYWATCH_SMTP_FROM", "copywatch@localhost"),
        tls=env.get("COPYWATCH_SMTP_TLS", "none"),
    )


def smtp_from_airflow(conn_id: str = SMTP_CONN_ID) -> SmtpSettings | None:
    """SMTP settings from an Airflow connection (inside a task); None when it is not defined.

    The connection's host, port, login and password are used; its extra may hold
    ``{"from": "...", "tls": "starttls"}``.
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        log.info("no Airflow connection %s", conn_id)
        return None
    extra = conn.extra_dejson or {}
    return SmtpSettings(
        host=conn.host or "localhost",
        port=int(conn.port or 25),
        user=conn.login or None,
        password=conn.password or None,
        sender=extra.get("from", "copywatch@localhost"),
        tls=extra.get("tls", "none"),
    )


def recipients_for(settings: Settings, client_slug: str, env: Mapping[str, str] | None = None) -> list[str]:
    """A client's report recipients (the database has no column for them yet).

    ``COPYWATCH_RECIPIENTS_<CLIENT>`` (slug upper-cased, ``-`` as ``_``; addresses separated by
    commas) wins; otherwise ``$COPYWATCH_HOME/recipients.json``: ``{"<client>": ["a@example.com"]}``.
    """
    env = os.environ if env is None else env
    value = env.get("COPYWATCH_RECIPIENTS_" + re.sub(r"[^A-Za-z0-9]", "_", client_slug).upper())
    if value:
        return [a.strip() for a in value.split(",") if a.strip()]
    path = settings.home / "recipients.json"
    if path.exists():
        found = json.loads(path.read_text(encoding="utf-8")).get(client_slug) or []
        return [str(a) for a in ([found] if isinstance(found, str) else found)]
    return []


def build_message(smtp: SmtpSettings, to: list[str], subject: str, report: Path, link: str | None) -> EmailMessage:
    """The report's HTML as the body (with a plain-text part) and the file attached."""
    html = report.read_text(encoding="utf-8")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = smtp.sender, ", ".join(to), subject
    msg["Date"], msg["Message-ID"] = formatdate(localtime=False), make_msgid(domain="copywatch")
    # base64 keeps the UTF-8 (Korean) text intact through servers without 8BITMIME.
    msg.set_content(f"{subject}\n\nThe report is attached (report.html){': ' + link if link else ''}.\n", cte="base64")
    msg.add_alternative(html, subtype="html", cte="base64")
    msg.add_attachment(html, subtype="html", filename="report.html", cte="base64")
    return msg


def send(smtp: SmtpSettings, msg: EmailMessage) -> None:
    """Deliver one message; any SMTP or network error propagates (Airflow retries the task)."""
    if smtp.tls == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    with client:
        if smtp.tls == "starttls":
            client.starttls(context=ssl.create_default_context())
        if smtp.user:
            client.login(smtp.user, smtp.password or "")
        client.send_message(msg)


def notify_client(
    settings: Settings, run_id: int, client_slug: str, *, smtp: SmtpSettings | None = None, attempt: int = 1
) -> dict[str, Any]:
    """E-mail the client's report of run ``run_id``; record the outcome under ``notify:<client>``.

    A report already sent for this run is not sent again (a retried or re-run task changes
    nothing). Without recipients or SMTP settings nothing is sent and a skip is recorded. A failed
    delivery is recorded (stats and a skip row) and re-raised, so Airflow retries it.
    """
    smtp = smtp or smtp_from_env()
    stage = f"notify:{client_slug}"
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            client = get_client(s, client_slug)
            run = s.get(Run, run_id)
            before = dict((run.stats or {}).get(stage) or {})
            if before.get("status") == "sent":
                log.info("report of run %d already sent to %s", run_id, client_slug)
                return before
            report = s.scalar(select(Report).where(Report.client_id == client.id, Report.run_id == run_id))
            if report is None:
                raise LookupError(f"no report of run {run_id} for {client_slug}: render it before notifying")
            to = recipients_for(settings, client_slug)
            day = run_date(run)
            stats: dict[str, Any] = {"status": "skipped", "recipients": len(to), "attempts": attempt, "findings": report.n_findings,
                                     "failures": list(before.get("failures") or [])}
            why = "no recipients configured" if not to else "no SMTP settings (COPYWATCH_SMTP_HOST or connection copywatch_smtp)" if smtp is None else None
            if why:
                log.warning("report of %s for %s not e-mailed: %s", client_slug, day, why)
                record_skip(s, run_id, "notify", client_slug, why)
                set_run_stats(s, run_id, stage, stats)
                return stats
            subject = f"[copywatch] {client.name}: {report.n_findings} likely copies ({day.isoformat()})"
            base = os.environ.get("COPYWATCH_REPORT_BASE_URL")
            link = f"{base.rstrip('/')}/{client_slug}/{day.isoformat()}/report.html" if base else None
            msg = build_message(smtp, to, subject, Path(report.path), link)
        try:
            send(smtp, msg)
        except (OSError, smtplib.SMTPException) as e:
            with db.session() as s:
                stats.update(status="failed", error=f"{type(e).__name__}: {e}")
                stats["failures"].append(f"attempt {attempt}: {type(e).__name__}: {e}")
                record_skip(s, run_id, "notify", client_slug, f"e-mail failed on attempt {attempt}: {type(e).__name__}: {e}")
                set_run_stats(s, run_id, stage, stats)
            log.error("e-mail of %s's report to %d recipients failed (attempt %d): %s", client_slug, len(to), attempt, e)
            raise
        with db.session() as s:
            stats.update(status="sent", error=None)
            set_run_stats(s, run_id, stage, stats)
    finally:
        db.dispose()
    log.info("report of %s for %s e-mailed to %d recipients", client_slug, day, len(to))
    return stats
