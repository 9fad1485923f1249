"""The DAG folder imports cleanly, cheaply, and every DAG is tagged and retried."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_dags_import_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {"copywatch_daily", "copywatch_backfill", "copywatch_gallery"} <= set(bag.dags)
    for dag_id, dag in bag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


def test_daily_dag_shape_and_schedule():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["copywatch_daily"]
    assert dag.timetable.expression == "0 6 * * *"
    assert str(dag.timetable.timezone) in ("Asia/Seoul", "Timezone('Asia/Seoul')")
    order = ["open_run", "list_targets", "crawl", "plan_embed", "embed", "list_clients", "match", "evidence", "report", "close_run", "notify"]
    assert set(order) == set(dag.task_ids)
    assert dag.get_task("plan_embed").upstream_task_ids == {"crawl", "open_run"}
    assert dag.get_task("embed").upstream_task_ids == {"plan_embed", "open_run"}
    assert dag.get_task("embed").pool == "copywatch_embed"
    assert "embed" in dag.get_task("list_clients").upstream_task_ids
    # match -> evidence (page screenshots) -> report, each mapped per client.
    assert dag.get_task("evidence").upstream_task_ids == {"match", "open_run"}
    assert dag.get_task("report").upstream_task_ids == {"evidence", "open_run"}
    assert dag.get_task("evidence").retries >= 1
    # Notification comes last, after the run is closed.
    assert dag.get_task("notify").upstream_task_ids == {"close_run", "list_clients", "open_run"}
    assert not dag.get_task("notify").downstream_task_ids


def test_backfill_and_gallery_dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    backfill = bag.dags["copywatch_backfill"]
    assert type(backfill.timetable).__name__ == "NullTimetable"
    assert set(backfill.params) == {"start", "end", "clients", "targets", "mode"}
    gallery = bag.dags["copywatch_gallery"]
    assert [a.uri for a in gallery.timetable.asset_condition.objects] == ["copywatch://gallery/"]


def test_dag_file_does_no_heavy_imports_at_parse_time():
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('torch', 'faiss', 'cv2', 'scrapy', 'pipeline.db', 'sqlalchemy.orm') if m in sys.modules and m != 'sqlalchemy.orm'];"
        "print(','.join(heavy))"
    )
    for name in ("copywatch_daily.py", "copywatch_backfill.py", "copywatch_gallery.py"):
        out = subprocess.run([sys.executable, "-c", code, str(REPO / "dags" / name)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "", name
