"""copywatch_backfill: re-crawl a date range, or re-match its stored crawls against current galleries.

Triggered by hand with params `start`, `end` (dates, Asia/Seoul, inclusive), `clients` and
`targets` (empty: all) and `mode`: `rematch` re-matches the crawled images stored for the daily runs
of those days against the clients' current galleries and regenerates their reports, without any
HTTP request (and so takes no page screenshots); `recrawl` runs the daily stages (crawl, embed,
match, evidence screenshots, report) once per day, keyed like copywatch_daily. Reports are
regenerated, not e-mailed. For whole daily runs through Airflow's own backfill use
`airflow backfill create --dag-id copywatch_daily --from-date D1 --to-date D2`.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from pipeline.airflow_env import EMBED_POOL

DEFAULT_ARGS = {"owner": "copywatch", "retries": 2, "retry_delay": timedelta(minutes=5)}


@dag(
    dag_id="copywatch_backfill",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="Asia/Seoul"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["copywatch", "backfill"],
    doc_md=__doc__,
    params={
        "start": Param(None, type=["null", "string"], format="date", description="first day (YYYY-MM-DD, Asia/Seoul)"),
        "end": Param(None, type=["null", "string"], format="date", description="last day, inclusive (default: start)"),
        "clients": Param([], type="array", items={"type": "string"}, description="client slugs (empty: all)"),
        "targets": Param([], type="array", items={"type": "integer"}, description="crawl target ids for recrawl (empty: all enabled)"),
        "mode": Param("rematch", enum=["rematch", "recrawl"], description="rematch stored crawls, or recrawl each day"),
    },
)
def copywatch_backfill():
    @task
    def days() -> list[str]:
        from pipeline.cli.core import backfill_days

        p = get_current_context()["params"]
        return [d.isoformat() for d in backfill_days(p["start"], p["end"])]

    @task
    def recrawl_days(day_list: list[str]) -> list[str]:
        return day_list if get_current_context()["params"]["mode"] == "recrawl" else []

    @task(max_active_tis_per_dag=1, pool=EMBED_POOL)
    def recrawl(day: str) -> list[str]:
        from datetime import date

        from pipeline.cli.core import run_daily
        from pipeline.config import load_settings

        p = get_current_context()["params"]
        paths = run_daily(load_settings(), date.fromisoformat(day), targets=p["targets"] or None, clients=p["clients"] or None)
        return [str(x) for x in paths]

    @task
    def rematch_pairs(day_list: list[str]) -> list[dict]:
        from datetime import date

        from pipeline.config import load_settings
        from pipeline.stages import rematch_plan, runs_between

        p = get_current_context()["params"]
        if p["mode"] != "rematch" or not day_list:
            return []
        settings = load_settings()
        runs = runs_between(settings, date.fromisoformat(day_list[0]), date.fromisoformat(day_list[-1]))
        return rematch_plan(settings, runs, p["clients"] or None)

    @task(max_active_tis_per_dag=2)
    def rematch(cw_run_id: int, client: str) -> dict:
        from pipeline.config import load_settings
        from pipeline.stages import match_run

        match_run(load_settings(), cw_run_id, client)
        return {"cw_run_id": cw_run_id, "client": client}

    @task
    def report(cw_run_id: int, client: str) -> str:
        from pipeline.config import load_settings
        from pipeline.stages import report_client

        return str(report_client(load_settings(), cw_run_id, client))

    day_list = days()
    recrawl.expand(day=recrawl_days(day_list))
    report.expand_kwargs(rematch.expand_kwargs(rematch_pairs(day_list)))


copywatch_backfill()
