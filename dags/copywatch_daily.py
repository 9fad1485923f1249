"""copywatch_daily: crawl the targets, embed new tiles in batches, match, screenshot and report per client, notify.

Wiring only: every task body imports one stage function and calls it; heavy modules (torch,
faiss, SQLAlchemy models, Scrapy) are imported inside the tasks, never at DAG-parse time.
Everything is keyed by the run's data interval, so a retried or re-run task leaves the same rows,
and `airflow backfill create --dag-id copywatch_daily --from-date D1 --to-date D2` re-runs past days.
Embedding tasks run in the Airflow pool `copywatch_embed` (created by `make airflow` and
`copywatch demo`; `airflow pools set copywatch_embed 1 ...` by hand).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from pipeline.airflow_env import EMBED_POOL

DEFAULT_ARGS = {"owner": "copywatch", "retries": 2, "retry_delay": timedelta(minutes=5)}


@dag(
    dag_id="copywatch_daily",
    schedule=CronDataIntervalTimetable("0 6 * * *", timezone="Asia/Seoul"),
    start_date=pendulum.datetime(2026, 11, 1, tz="Asia/Seoul"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["copywatch", "daily"],
    doc_md=__doc__,
)
def copywatch_daily():
    @task
    def open_run() -> int:
        from pipeline.config import load_settings
        from pipeline.stages import open_run as open_run_stage

        ctx = get_current_context()
        return open_run_stage(load_settings(), ctx["data_interval_start"], ctx["data_interval_end"])

    @task
    def list_targets(cw_run_id: int) -> list[int]:
        from pipeline.config import load_settings
        from pipeline.stages import enabled_targets

        return enabled_targets(load_settings())

    @task(max_active_tis_per_dag=2)
    def crawl(target_id: int, cw_run_id: int) -> dict:
        from crawler.run import crawl_target
        from pipeline.config import load_settings
        from pipeline.stages import record_crawl, run_day

        settings = load_settings()
        counts = crawl_target(settings, target_id, cw_run_id, run_day(settings, cw_run_id), timeout_s=settings.crawl_timeout_s or None)
        return record_crawl(settings, cw_run_id, target_id, counts)

    @task
    def plan_embed(cw_run_id: int, crawled: list[dict]) -> list[list[int]]:
        from pipeline.config import load_settings
        from pipeline.stages import embed_batches

        return embed_batches(load_settings(), cw_run_id)

    @task(pool=EMBED_POOL)
    def embed(batch: list[int], cw_run_id: int) -> dict:
        from pipeline.config import load_settings
        from pipeline.stages import embed_run_images

        return embed_run_images(load_settings(), cw_run_id, id_range=(batch[0], batch[1]))

    @task
    def list_clients(cw_run_id: int) -> list[str]:
        from pipeline.config import load_settings
        from pipeline.stages import client_slugs

        return client_slugs(load_settings())

    @task
    def match(client: str, cw_run_id: int) -> str:
        from pipeline.config import load_settings
        from pipeline.stages import match_run

        match_run(load_settings(), cw_run_id, client)
        return client

    @task(max_active_tis_per_dag=2)
    def evidence(client: str, cw_run_id: int) -> str:
        from pipeline.config import load_settings
        from pipeline.evidence import capture_evidence

        capture_evidence(load_settings(), cw_run_id, client)
        return client

    @task
    def report(client: str, cw_run_id: int) -> str:
        from pipeline.config import load_settings
        from pipeline.stages import report_client

        return str(report_client(load_settings(), cw_run_id, client))

    @task
    def close_run(cw_run_id: int, reports: list[str]) -> dict:
        from pipeline.config import load_settings
        from pipeline.stages import close_run as close_run_stage

        return close_run_stage(load_settings(), cw_run_id)

    @task(retries=3, retry_delay=timedelta(minutes=2))
    def notify(client: str, cw_run_id: int) -> dict:
        from pipeline.config import load_settings
        from reports.notify import notify_client, smtp_from_airflow, smtp_from_env

        smtp = smtp_from_env() or smtp_from_airflow()
        return notify_client(load_settings(), cw_run_id, client, smtp=smtp, attempt=get_current_context()["ti"].try_number)

    cw_run_id = open_run()
    crawled = crawl.partial(cw_run_id=cw_run_id).expand(target_id=list_targets(cw_run_id))
    embedded = embed.partial(cw_run_id=cw_run_id).expand(batch=plan_embed(cw_run_id, crawled))
    clients = list_clients(cw_run_id)
    embedded >> clients
    matched = match.partial(cw_run_id=cw_run_id).expand(client=clients)
    shot = evidence.partial(cw_run_id=cw_run_id).expand(client=matched)
    reports = report.partial(cw_run_id=cw_run_id).expand(client=shot)
    closed = close_run(cw_run_id, reports)
    closed >> notify.partial(cw_run_id=cw_run_id).expand(client=clients)


copywatch_daily()
