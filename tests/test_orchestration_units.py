"""Small pieces of the orchestration: backfill days, per-stage counts, rematch plans, gallery events."""
from __future__ import annotations

import socket
from datetime import date, datetime

import pytest


def test_backfill_days():
    from pipeline.cli.core import backfill_days

    assert backfill_days("2026-11-20", "2026-11-22") == [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
    assert backfill_days("2026-11-20", None) == [date(2026, 11, 20)]
    with pytest.raises(ValueError):
        backfill_days(None, "2026-11-20")
    with pytest.raises(ValueError):
        backfill_days("2026-11-22", "2026-11-20")


def test_batch_counts_are_summed_and_a_retried_batch_overwrites(cw_home):
    from pipeline.db import Database, Run
    from pipeline.repo import set_run_stats, upsert_run

    db = Database(cw_home.database_url)
    with db.session() as s:
        run_id = upsert_run(s, "daily", datetime(2026, 11, 25, 21), datetime(2026, 11, 26, 21)).id
        set_run_stats(s, run_id, "embed:1", {"images": 40, "tiles": 400})
        set_run_stats(s, run_id, "embed:41", {"images": 11, "tiles": 90})
        set_run_stats(s, run_id, "embed:41", {"images": 11, "tiles": 90})  # the retry of a batch
        set_run_stats(s, run_id, "match:hanbit", {"findings": 3})
        stats = dict(s.get(Run, run_id).stats)
    db.dispose()
    assert stats["embed"] == {"images": 51, "tiles": 490}
    assert "match" not in stats


def test_rematch_plan_and_recent_runs(cw_home):
    from pipeline.db import Database
    from pipeline.repo import upsert_client, upsert_run
    from pipeline.stages import recent_runs, rematch_plan

    db = Database(cw_home.database_url)
    with db.session() as s:
        upsert_client(s, "hanbit", "한빛")
        upsert_client(s, "blue", "Blue")
        ids = [upsert_run(s, "daily", datetime(2026, 11, d - 1, 21), datetime(2026, 11, d, 21)).id for d in (10, 20, 25)]
    db.dispose()
    # run_date is the interval end in Asia/Seoul: the 10th..25th at 21:00 UTC are the 11th..26th.
    assert recent_runs(cw_home, date(2026, 11, 26), 7) == [ids[1], ids[2]]
    assert rematch_plan(cw_home, [ids[2]], ["blue"]) == [{"cw_run_id": ids[2], "client": "blue"}]
    assert len(rematch_plan(cw_home, [ids[1], ids[2]])) == 4
    with pytest.raises(LookupError):
        rematch_plan(cw_home, [ids[2]], ["nobody"])


def test_gallery_event_without_airflow_says_when_the_rebuild_happens(cw_home):
    from pipeline.airflow_env import airflow_env
    from pipeline.airflow_events import emit_gallery_changed

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = airflow_env(cw_home, {"COPYWATCH_AIRFLOW_API_URL": f"http://127.0.0.1:{port}"})
    assert emit_gallery_changed(cw_home, "hanbit", {"added": 1}, env=env) == "none"
