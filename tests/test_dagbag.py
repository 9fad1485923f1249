"""The DAG folder imports cleanly, cheaply, and every DAG is tagged and retried."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_dags_import_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert "copywatch_daily" in bag.dags
    for dag_id, dag in bag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


def test_daily_dag_shape_and_schedule():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["copywatch_daily"]
    assert dag.timetable.expression == "0 6 * * *"
    assert str(dag.timetable.timezone) in ("Asia/Seoul", "Timezone('Asia/Seoul')")
    order = ["open_run", "list_targets", "crawl", "embed", "list_clients", "match", "report", "close_run"]
    assert set(order) == set(dag.task_ids)
    assert dag.get_task("embed").upstream_task_ids == {"crawl", "open_run"}
    assert "embed" in dag.get_task("list_clients").upstream_task_ids
    assert dag.get_task("report").upstream_task_ids == {"match", "open_run"}


def test_dag_file_does_no_heavy_imports_at_parse_time():
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('torch', 'faiss', 'cv2', 'scrapy', 'pipeline.db', 'sqlalchemy.orm') if m in sys.modules and m != 'sqlalchemy.orm'];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "dags" / "copywatch_daily.py")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
