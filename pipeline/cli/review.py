"""Review commands: list findings, decide on them, the allowlist, analyst accounts and the analysts' web app."""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from pathlib import Path

from pipeline.config import load_settings

log = logging.getLogger(__name__)

APP_MODULE = "reports.app"


def register(sub) -> None:
    _findings(sub)
    _review(sub)
    _allowlist(sub)
    _analyst(sub)
    p = sub.add_parser("app", help="the analysts' web app (Streamlit) on 127.0.0.1",
                       description="Start the analysts' web app on 127.0.0.1: sign-in per analyst, gallery search "
                       "(top 10), the review queue and finding details. Add analysts with `copywatch analyst add`.")
    p.add_argument("--port", type=int, default=8501, help="port on 127.0.0.1 (default 8501)")
    p.set_defaults(func=cmd_app)


def _db():
    from pipeline.db import Database

    return Database(load_settings().database_url)


def _help(p: argparse.ArgumentParser):
    return lambda a: (p.print_help(), 2)[1]


# --- findings and review ---------------------------------------------------------------------

def _findings(sub) -> None:
    from pipeline.review import STATUSES

    p = sub.add_parser("findings", help="list a client's findings", description="List findings of a client.")
    fsub = p.add_subparsers(dest="findings_command", metavar="FINDINGS_COMMAND")
    ls = fsub.add_parser("list", help="a client's findings, best score first")
    ls.add_argument("client")
    ls.add_argument("--status", choices=STATUSES, help="only findings with this status")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_findings_list)
    p.set_defaults(func=_help(p))


def cmd_findings_list(args) -> int:
    from pipeline.repo import get_client
    from pipeline.review import apply_allowlist, client_findings

    db = _db()
    with db.session() as s:
        client = get_client(s, args.client)
        apply_allowlist(s, client)
        rows = [_finding_dict(r) for r in client_findings(s, client, args.status)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{'id':>5}  {'status':<10}  {'score':>5}  {'last seen':<10}  shop  page")
    for r in rows:
        print(f"{r['id']:>5}  {r['status']:<10}  {r['score']:>5.2f}  {r['last_seen']:<10}  {_one_line(r['shop'])}  {_one_line(r['page_url'])}")
    return 0


def _one_line(text: str) -> str:
    """Crawled text on one terminal line: control characters removed."""
    return "".join(c if c.isprintable() else " " for c in text)


def _finding_dict(row) -> dict:
    f, page = row.finding, row.page
    return {
        "id": f.id, "status": f.status, "score": round(f.score, 4), "overlap": round(f.overlap, 4),
        "shop": page.shop, "page_url": page.url, "title": page.title, "price": page.price, "seller": dict(page.seller or {}),
        "first_seen": f.first_seen.isoformat(), "last_seen": f.last_seen.isoformat(),
        "suspect_sha256": row.image.sha256, "protected_sha256": row.gallery.sha256, "protected_label": row.gallery.label,
    }


def _review(sub) -> None:
    from pipeline.review import VERBS

    p = sub.add_parser("review", help="confirm, dismiss or authorise a finding (recorded in the audit trail)",
                       description="Decide on a finding: confirm (a copy), dismiss (a false match) or authorise (the seller "
                       "may use the image). Dismissed and authorised findings leave later reports until the suspect image changes.")
    p.add_argument("finding_id", type=int)
    p.add_argument("decision", choices=list(VERBS))
    p.add_argument("--analyst", required=True, help="who decides (recorded)")
    p.add_argument("--note", help="why (recorded)")
    p.set_defaults(func=cmd_review)

    a = sub.add_parser("audit", help="the review decisions of a client (audit trail)")
    a.add_argument("client")
    a.add_argument("--finding", type=int, help="only this finding's decisions")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_audit)


def cmd_review(args) -> int:
    from pipeline.review import decide, get_finding

    db = _db()
    with db.session() as s:
        d = decide(s, get_finding(s, args.finding_id), args.decision, args.analyst, args.note)
        print(f"finding {d.finding_id}: {d.previous_status} -> {d.decision} by {d.analyst} at {d.decided_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def cmd_audit(args) -> int:
    from pipeline.repo import get_client
    from pipeline.review import audit_trail, describe

    db = _db()
    with db.session() as s:
        rows = [describe(d) for d in audit_trail(s, get_client(s, args.client), args.finding)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for r in rows:
        print(f"{r['decided_at']}  finding {r['finding_id']}: {r['previous_status']} -> {r['decision']} by {r['analyst']}  {_one_line(r['note'] or '')}")
    return 0


# --- allowlist -------------------------------------------------------------------------------

def _allowlist(sub) -> None:
    p = sub.add_parser("allowlist", help="a client's authorised sellers (domains, business numbers)",
                       description="Authorised sellers of a client: findings on their pages are authorised automatically.")
    asub = p.add_subparsers(dest="allowlist_command", metavar="ALLOWLIST_COMMAND")
    a = asub.add_parser("add", help="authorise a seller by shop domain or business registration number")
    a.add_argument("client")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--domain", help="shop domain, e.g. partner.example.com (its subdomains too)")
    who.add_argument("--business-number", help="사업자등록번호, e.g. 123-45-67890")
    a.add_argument("--analyst", default="cli", help="who adds it (recorded)")
    a.set_defaults(func=cmd_allowlist_add)
    ls = asub.add_parser("list", help="list a client's allowlist")
    ls.add_argument("client")
    ls.set_defaults(func=cmd_allowlist_list)
    p.set_defaults(func=_help(p))


def cmd_allowlist_add(args) -> int:
    from pipeline.repo import get_client
    from pipeline.review import allowlist_add, apply_allowlist

    db = _db()
    with db.session() as s:
        client = get_client(s, args.client)
        entry, created = allowlist_add(s, client, domain=args.domain, business_number=args.business_number, added_by=args.analyst)
        authorised = apply_allowlist(s, client)
        print(f"{client.slug}: {entry.kind} {entry.value} {'added' if created else 'already listed'}; {len(authorised)} findings authorised")
    return 0


def cmd_allowlist_list(args) -> int:
    from pipeline.repo import get_client
    from pipeline.review import allowlist_entries

    db = _db()
    with db.session() as s:
        for e in allowlist_entries(s, get_client(s, args.client)):
            print(f"{e.kind}\t{e.value}\t{e.added_by}\t{e.added_at:%Y-%m-%d}")
    return 0


# --- analysts and the app ----------------------------------------------------------------------

def _analyst(sub) -> None:
    p = sub.add_parser("analyst", help="analyst accounts of the web app", description="Manage analyst accounts.")
    asub = p.add_subparsers(dest="analyst_command", metavar="ANALYST_COMMAND")
    a = asub.add_parser("add", help="add an analyst (or reset the password and clients of one)")
    a.add_argument("name")
    a.add_argument("--clients", required=True, help="comma-separated client slugs the analyst may see")
    a.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable instead of prompting")
    a.set_defaults(func=cmd_analyst_add)
    p.set_defaults(func=_help(p))


def _password(args) -> str:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise ValueError(f"environment variable {args.password_env} is not set")
        return value
    first = getpass.getpass(f"password for {args.name}: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the passwords differ")
    return first


def cmd_analyst_add(args) -> int:
    from pipeline.analysts import add_analyst, analyst_clients

    password = _password(args)
    db = _db()
    with db.session() as s:
        analyst = add_analyst(s, args.name, password, args.clients.split(","))
        slugs = ", ".join(c.slug for c in analyst_clients(s, analyst.id))
        print(f"analyst {analyst.name} (id {analyst.id}): {slugs}")
    return 0


def app_file() -> Path:
    """The Streamlit script of the analysts' app (found without running it)."""
    from importlib.util import find_spec

    spec = find_spec(APP_MODULE)
    if spec is None or spec.origin is None:
        raise LookupError(f"cannot find {APP_MODULE}: is copywatch installed?")
    return Path(spec.origin)


def app_command(port: int) -> list[str]:
    """The Streamlit command line of the analysts' app, bound to 127.0.0.1."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app_file()),
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
    ]


def cmd_app(args) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"port {args.port} is out of range")
    log.info("database: %s", load_settings().database_url)
    print(f"analysts' app on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)")
    sys.stdout.flush()
    cmd = app_command(args.port)
    # Become the Streamlit server, so that signals (Ctrl-C, a service manager's SIGTERM) reach it directly.
    os.execv(cmd[0], cmd)
    return 0  # not reached
