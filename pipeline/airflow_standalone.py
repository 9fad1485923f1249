"""`make airflow`: Airflow's UI and scheduler (`airflow standalone`) on copywatch's data folder; Ctrl-C stops it."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.airflow_env import EMBED_POOL, EMBED_POOL_SLOTS, airflow_env
from pipeline.config import Settings, load_settings

log = logging.getLogger(__name__)


def standalone_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """copywatch's Airflow environment, bound to 127.0.0.1 with low parallelism, the venv first on PATH.

    Variables already set in ``base`` for the API port and parallelism win.
    """
    env = airflow_env(settings, base)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["AIRFLOW__API__HOST"] = "127.0.0.1"
    env.setdefault("AIRFLOW__API__PORT", "8080")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "4")
    return env


def prepare(env: dict[str, str]) -> None:
    """Migrate Airflow's metadata database and create the embedding pool when it is missing."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, text=True)
    if subprocess.run([airflow, "pools", "get", EMBED_POOL], env=env, capture_output=True).returncode != 0:
        subprocess.run([airflow, "pools", "set", EMBED_POOL, str(EMBED_POOL_SLOTS), "copywatch: concurrent embedding tasks"],
                       env=env, check=True, capture_output=True, text=True)


def main() -> int:
    """Prepare, then replace this process with `airflow standalone` (SIGINT restored, so `kill -INT` stops it)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    settings = load_settings()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    env = standalone_env(settings)
    prepare(env)
    log.info("Airflow UI on http://127.0.0.1:%s (user admin, password in %s); Ctrl-C stops it",
             env["AIRFLOW__API__PORT"], settings.airflow_home / "simple_auth_manager_passwords.json.generated")
    # A shell's background `&` starts us with SIGINT ignored, and exec keeps an ignored signal
    # ignored: airflow standalone stops cleanly only on SIGINT, so give it the default handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    airflow = str(Path(sys.executable).with_name("airflow"))
    os.execve(airflow, [airflow, "standalone"], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
