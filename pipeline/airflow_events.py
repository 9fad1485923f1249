"""Gallery-change events for Airflow: the `copywatch://gallery` asset event that `gallery add` emits."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

from pipeline.airflow_env import GALLERY_ASSET_NAME, GALLERY_ASSET_URI, airflow_env
from pipeline.config import Settings

log = logging.getLogger(__name__)

#: Where the Airflow API server answers unless COPYWATCH_AIRFLOW_API_URL says otherwise.
DEFAULT_API_URL = "http://127.0.0.1:8080"
#: The file simple auth manager writes the generated admin password to, inside AIRFLOW_HOME.
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


class AirflowUnreachable(RuntimeError):
    """No Airflow API server answered."""


def _request(url: str, *, data: dict | None = None, token: str | None = None, timeout: float = 5.0) -> Any:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        raise AirflowUnreachable(f"{url}: {e}") from e


def api_credentials(env: Mapping[str, str]) -> tuple[str, str] | None:
    """COPYWATCH_AIRFLOW_USER/PASSWORD, else the admin password `airflow standalone` generated."""
    if env.get("COPYWATCH_AIRFLOW_PASSWORD"):
        return env.get("COPYWATCH_AIRFLOW_USER", "admin"), env["COPYWATCH_AIRFLOW_PASSWORD"]
    path = os.path.join(env.get("AIRFLOW_HOME", ""), PASSWORD_FILE)
    if env.get("AIRFLOW_HOME") and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            users = json.load(f)
        if users:
            user = "admin" if "admin" in users else sorted(users)[0]
            return user, users[user]
    return None


def emit_via_api(base_url: str, extra: dict[str, Any], credentials: tuple[str, str] | None) -> int:
    """POST the event to Airflow's REST API (`/api/v2/assets/events`); returns the event id."""
    token = None
    if credentials:
        token = _request(f"{base_url}/auth/token", data={"username": credentials[0], "password": credentials[1]})["access_token"]
    found = _request(f"{base_url}/api/v2/assets?" + urllib.parse.urlencode({"uri_pattern": GALLERY_ASSET_URI}), token=token)
    ids = [a["id"] for a in found.get("assets", []) if a.get("uri") == GALLERY_ASSET_URI]
    if not ids:
        raise LookupError(f"Airflow at {base_url} does not know the asset {GALLERY_ASSET_URI}: is the copywatch_gallery DAG parsed?")
    return int(_request(f"{base_url}/api/v2/assets/events", data={"asset_id": ids[0], "extra": extra}, token=token)["id"])


def record_in_db(extra: dict[str, Any]) -> int | None:
    """Record the event in Airflow's metadata database (Airflow not running); call with Airflow's env set.

    Uses the function Airflow's own `POST /api/v2/assets/events` calls; queues the consumer DAG
    unless it is paused. None when the asset is unknown (the DAG was never parsed).
    """
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == GALLERY_ASSET_NAME, AssetModel.uri == GALLERY_ASSET_URI))
        if asset is None:
            return None
        event = AssetManager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)
        return event.id if event is not None else None


def emit_gallery_changed(settings: Settings, client: str, counts: dict[str, int], env: Mapping[str, str] | None = None) -> str:
    """Tell Airflow that ``client``'s gallery changed; returns how (``api``, ``db`` or ``none``).

    Tries the REST API (COPYWATCH_AIRFLOW_API_URL, default http://127.0.0.1:8080), then Airflow's
    metadata database when it exists; if neither is there, logs that the index is rebuilt by the
    next daily run (matching rebuilds an index whose gallery changed).
    """
    env = dict(airflow_env(settings) if env is None else env)
    extra = {"client": client, "added": int(counts.get("added", 0))}
    base = env.get("COPYWATCH_AIRFLOW_API_URL", DEFAULT_API_URL).rstrip("/")
    try:
        event_id = emit_via_api(base, extra, api_credentials(env))
        log.info("gallery change of %s sent to Airflow at %s (asset event %d)", client, base, event_id)
        return "api"
    except AirflowUnreachable as e:
        log.info("Airflow API not reachable (%s)", e)
    db_url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if db_url.startswith("sqlite:///") and os.path.exists(db_url.removeprefix("sqlite:///")):
        code = "import json, sys; from pipeline.airflow_events import record_in_db; print(json.dumps(record_in_db(json.loads(sys.argv[1]))))"
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(extra)], env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"recording the gallery change in Airflow's database failed:\n{proc.stderr[-3000:]}")
        event_id = json.loads(proc.stdout.strip().splitlines()[-1])
        if event_id is not None:
            log.info("gallery change of %s recorded in Airflow's database (asset event %d); copywatch_gallery runs when the scheduler next runs", client, event_id)
            return "db"
        log.info("Airflow's database does not know the asset %s yet", GALLERY_ASSET_URI)
    log.warning("Airflow is not reachable: %s's index is rebuilt and its findings updated at the next daily run "
                "(or run `copywatch rematch %s`)", client, client)
    return "none"
