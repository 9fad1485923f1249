"""`make airflow`: airflow standalone on 127.0.0.1 lists the copywatch DAGs, paused, and stops on SIGINT."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None, data: dict | None = None):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data else None, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read()


def test_standalone_serves_the_dags_and_stops_on_sigint(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(COPYWATCH_HOME=str(tmp_path / "cw"), AIRFLOW__API__PORT=str(port))
    env.pop("COPYWATCH_DATABASE_URL", None)
    log = open(tmp_path / "standalone.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.airflow_standalone"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        dags: dict = {}
        token = None
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
            try:
                status, _ = _get(base + "/")
                pw_file = tmp_path / "cw" / "airflow" / "simple_auth_manager_passwords.json.generated"
                if token is None:
                    password = json.loads(pw_file.read_text())["admin"]
                    status, body = _get(base + "/auth/token", data={"username": "admin", "password": password})
                    token = json.loads(body)["access_token"]
                _, body = _get(base + "/api/v2/dags?dag_id_pattern=copywatch", token=token)
                dags = {d["dag_id"]: d["is_paused"] for d in json.loads(body)["dags"]}
                if len(dags) == 3:
                    break
            except (OSError, KeyError, ValueError):
                continue
        assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
        assert dags == {"copywatch_daily": True, "copywatch_backfill": True, "copywatch_gallery": True}, dags
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    assert code in (0, -signal.SIGINT), (code, (tmp_path / "standalone.log").read_text()[-3000:])
    time.sleep(1)
    leftovers = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], leftovers
