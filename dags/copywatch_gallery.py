"""copywatch_gallery: after a client's gallery grows, re-index it and re-match the recent crawls.

Scheduled on the Asset `copywatch://gallery`, which `copywatch gallery add` emits with the client's
slug in the event's extra. It embeds the new gallery images, rebuilds that client's tile index and
re-matches the images crawled by the daily runs of the last COPYWATCH_REMATCH_DAYS days (default 7)
without any HTTP request, then regenerates those runs' reports; new findings also appear in the
next daily report. Triggered by hand, param `clients` names the clients (empty: all).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from pipeline.airflow_env import GALLERY_ASSET_NAME, GALLERY_ASSET_URI

DEFAULT_ARGS = {"owner": "copywatch", "retries": 2, "retry_delay": timedelta(minutes=2)}
GALLERY = Asset(name=GALLERY_ASSET_NAME, uri=GALLERY_ASSET_URI)


@dag(
    dag_id="copywatch_gallery",
    schedule=[GALLERY],
    start_date=pendulum.datetime(2026, 11, 1, tz="Asia/Seoul"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["copywatch", "gallery"],
    doc_md=__doc__,
    params={"clients": Param([], type="array", items={"type": "string"}, description="client slugs (empty: from the asset events, else all)")},
)
def copywatch_gallery():
    @task
    def changed_clients() -> list[str]:
        from pipeline.config import load_settings
        from pipeline.stages import client_slugs

        ctx = get_current_context()
        named = list(ctx["params"]["clients"])
        for events in (ctx.get("triggering_asset_events") or {}).values():
            named += [e.extra["client"] for e in events if (e.extra or {}).get("client")]
        return sorted(set(named)) or client_slugs(load_settings())

    @task
    def reindex(client: str) -> str:
        from pipeline.config import load_settings
        from pipeline.stages import refresh_client_index

        refresh_client_index(load_settings(), client)
        return client

    @task
    def rematch_pairs(clients: list[str]) -> list[dict]:
        from pipeline.config import load_settings
        from pipeline.repo import SEOUL
        from pipeline.stages import recent_runs, rematch_plan

        settings = load_settings()
        until = get_current_context()["dag_run"].run_after.astimezone(SEOUL).date()
        return rematch_plan(settings, recent_runs(settings, until, settings.rematch_days), list(clients))

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

    clients = changed_clients()
    indexed = reindex.expand(client=clients)
    report.expand_kwargs(rematch.expand_kwargs(rematch_pairs(indexed)))


copywatch_gallery()
