"""Test set-up: Airflow and copywatch point at temporary folders before anything imports airflow."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="copywatch-airflow-"))
os.environ.update(
    AIRFLOW_HOME=str(_AIRFLOW_HOME),
    AIRFLOW_CONFIG=str(REPO / "airflow.cfg"),
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
)


@pytest.fixture
def cw_home(tmp_path, monkeypatch):
    """A fresh copywatch data folder and SQLite database, visible to stage functions via the env."""
    home = tmp_path / "cw"
    home.mkdir()
    monkeypatch.setenv("COPYWATCH_HOME", str(home))
    monkeypatch.setenv("COPYWATCH_DATABASE_URL", f"sqlite:///{home / 'copywatch.db'}")
    monkeypatch.setenv("COPYWATCH_EMBEDDER", "default")
    from pipeline.config import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database, migrated once per test session."""
    proc = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _AIRFLOW_HOME
