"""Tests of review decisions, the audit trail, the allowlist, analyst accounts and the review CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.analysts import add_analyst, analyst_clients, authenticate, client_for
from pipeline.cli import main
from pipeline.db import Analyst, Finding, ReviewDecision, migrate
from pipeline.repo import get_client
from pipeline.review import (
    ALLOWLIST_ANALYST, allowlist_add, allowlist_entries, apply_allowlist, audit_trail, decide, get_finding,
    normalise_business_number, normalise_domain,
)
from reviewdata import BIZ_NUMBER, PASSWORD, build_world


@pytest.fixture()
def world(cw_home):
    w = build_world(cw_home)
    yield w
    w.db.dispose()


def _status(world, key: str) -> str:
    with world.db.session() as s:
        return s.get(Finding, world.findings[key]).status


def test_decide_sets_status_and_appends_audit(world) -> None:
    with world.db.session() as s:
        f = get_finding(s, world.findings["copy"])
        decide(s, f, "confirm", "kim", "clear copy")
        decide(s, f, "dismiss", "lee", None)
    with world.db.session() as s:
        trail = audit_trail(s, get_client(s, "acme"), world.findings["copy"])
        assert [(d.previous_status, d.decision, d.analyst, d.note) for d in trail] == [
            ("new", "confirmed", "kim", "clear copy"), ("confirmed", "dismissed", "lee", None)]
        assert all(d.decided_at is not None and d.client_id == trail[0].client_id for d in trail)
        assert audit_trail(s, get_client(s, "other")) == []
    assert _status(world, "copy") == "dismissed"


def test_decide_rejects_bad_input(world) -> None:
    with world.db.session() as s:
        f = get_finding(s, world.findings["copy"])
        with pytest.raises(ValueError):
            decide(s, f, "delete", "kim")
        with pytest.raises(ValueError):
            decide(s, f, "confirm", "kim; drop table")
        with pytest.raises(LookupError):
            get_finding(s, world.findings["other"], {f.client_id})


def test_allowlist_domain_and_business_number_authorise_with_audit(world) -> None:
    with world.db.session() as s:
        acme = get_client(s, "acme")
        _, created = allowlist_add(s, acme, domain="https://www.Partner.example/", added_by="kim")
        assert created
        _, again = allowlist_add(s, acme, domain="partner.example")
        assert not again
        allowlist_add(s, acme, business_number=BIZ_NUMBER)
        assert [(e.kind, e.value) for e in allowlist_entries(s, acme)] == [("business_number", "2208162517"), ("domain", "partner.example")]
        decided = apply_allowlist(s, acme)
        assert sorted(d.finding_id for d in decided) == sorted([world.findings["partner"], world.findings["biz"]])
        assert {d.analyst for d in decided} == {ALLOWLIST_ANALYST}
        assert apply_allowlist(s, acme) == []
        assert allowlist_entries(s, get_client(s, "other")) == []
    assert _status(world, "partner") == _status(world, "biz") == "authorised"
    assert _status(world, "copy") == "new"


def test_allowlist_keeps_analyst_decisions(world) -> None:
    with world.db.session() as s:
        decide(s, get_finding(s, world.findings["partner"]), "confirm", "kim")
        acme = get_client(s, "acme")
        allowlist_add(s, acme, domain="partner.example")
        assert apply_allowlist(s, acme) == []
    assert _status(world, "partner") == "confirmed"


def test_normalisers() -> None:
    assert normalise_domain("WWW.Shop.Example.com") == "shop.example.com"
    assert normalise_domain("https://xn--9n2b.example/path") == "xn--9n2b.example"
    assert normalise_business_number("123-45-67890") == "1234567890"
    for bad in ("not a domain", "", "a/../b", "<script>"):
        with pytest.raises(ValueError):
            normalise_domain(bad)
    with pytest.raises(ValueError):
        normalise_business_number("123-45")


def test_analyst_passwords_are_salted_scrypt(world) -> None:
    with world.db.session() as s:
        a = add_analyst(s, "kim", PASSWORD, ["acme"])
        b = add_analyst(s, "lee", PASSWORD, ["acme", "other"])
        assert a.salt != b.salt and a.password_hash != b.password_hash and PASSWORD not in a.password_hash
        assert a.kdf.startswith("scrypt:")
        assert authenticate(s, "kim", PASSWORD).id == a.id
        assert authenticate(s, "kim", "wrong password") is None and authenticate(s, "nobody", PASSWORD) is None
        assert [c.slug for c in analyst_clients(s, a.id)] == ["acme"]
        with pytest.raises(LookupError):
            client_for(s, a.id, "other")
        with pytest.raises(ValueError):
            add_analyst(s, "short", "pw", ["acme"])
        with pytest.raises(LookupError):
            add_analyst(s, "ghost", PASSWORD, ["nope"])


def test_cli_findings_review_allowlist_audit(world, capsys, monkeypatch) -> None:
    assert main(["findings", "list", "acme", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} == {world.findings[k] for k in ("copy", "ongoing", "partner", "biz", "gone")}
    assert rows[0]["score"] >= rows[-1]["score"]
    fid = world.findings["copy"]
    assert main(["review", str(fid), "confirm", "--analyst", "kim", "--note", "takedown"]) == 0
    assert "new -> confirmed by kim" in capsys.readouterr().out
    assert main(["findings", "list", "acme", "--status", "confirmed", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [fid]
    assert main(["allowlist", "add", "acme", "--domain", "partner.example"]) == 0
    assert "1 findings authorised" in capsys.readouterr().out
    assert main(["allowlist", "add", "acme", "--business-number", "12-3"]) == 1
    assert main(["allowlist", "list", "acme"]) == 0
    assert "domain\tpartner.example" in capsys.readouterr().out
    assert main(["audit", "acme", "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    assert [(t["finding_id"], t["decision"], t["analyst"]) for t in trail] == [(fid, "confirmed", "kim"), (world.findings["partner"], "authorised", "allowlist")]
    assert main(["review", "99999", "dismiss", "--analyst", "kim"]) == 1
    monkeypatch.setenv("CW_TEST_PW", PASSWORD)
    assert main(["analyst", "add", "park", "--clients", "acme,other", "--password-env", "CW_TEST_PW"]) == 0
    assert "acme, other" in capsys.readouterr().out
    with world.db.session() as s:
        assert s.scalar(select(Analyst).where(Analyst.name == "park")) is not None
        assert s.scalar(select(ReviewDecision).where(ReviewDecision.finding_id == fid)).note == "takedown"


def test_findings_list_terminal_output_strips_control_characters(world, capsys) -> None:
    assert main(["findings", "list", "acme"]) == 0
    out = capsys.readouterr().out
    assert "copy.example" in out and "\x1b" not in out


def test_migration_matches_models(tmp_path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from pipeline.db import Base, make_engine

    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url)
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        heads = MigrationContext.configure(conn).get_current_heads()
    engine.dispose()
    # One linear history, at its newest revision (which builds on 0002_review).
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    import pipeline.db

    cfg.set_main_option("script_location", str(Path(pipeline.db.__file__).with_name("migrations")))
    script = ScriptDirectory.from_config(cfg)
    assert len(script.get_heads()) == 1 and heads == tuple(script.get_heads())
    assert "0002_review" in {r.revision for r in script.walk_revisions()}


def test_app_command_binds_localhost_and_rejects_bad_ports(cw_home) -> None:
    from pipeline.cli.review import app_command

    cmd = app_command(8765)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("run") + 1].endswith("reports/app.py")
    assert main(["app", "--port", "70000"]) == 1
