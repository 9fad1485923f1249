"""Environment for running Airflow on copywatch's data folder with the repo's airflow.cfg."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import Settings

#: The checkout this package runs from (an editable install keeps it in place).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The Airflow Asset a client's gallery change emits (the client's slug is in the event's extra);
#: the copywatch_gallery DAG is scheduled on it.
GALLERY_ASSET_NAME = "copywatch_gallery"
GALLERY_ASSET_URI = "copywatch://gallery/"
#: The Airflow pool that limits concurrent embedding tasks, and its default size.
EMBED_POOL = "copywatch_embed"
EMBED_POOL_SLOTS = 1


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Variables that point Airflow at the repo's ``airflow.cfg`` and ``dags/`` and at a
    metadata database inside ``settings.airflow_home``; copywatch's own settings ride along."""
    env = dict(os.environ if base is None else base)
    home = settings.airflow_home
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW_CONFIG=str(REPO_ROOT / "airflow.cfg"),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO_ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        COPYWATCH_HOME=str(settings.home),
        COPYWATCH_DATABASE_URL=settings.database_url,
        COPYWATCH_EMBEDDER=settings.embedder,
    )
    return env


def apply(settings: Settings) -> None:
    """Set the variables in this process (before anything imports airflow)."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(airflow_env(settings))
