"""Starting and reading a source's ingest runs through the Prefect server's REST API, for
processes that must not import Prefect (the API answering `POST /sources/{name}/sync`).

A sync asked for this way is a flow run of the source's deployment (`ingest/<source>`), created
directly (`POST /deployments/{id}/create_flow_run`), like a scheduled run: whoever serves the
deployment (`sluice deploy`, or a worker of its pool) runs it, Prefect shows it, and it lands in
the index's run history under its flow run id. Chosen over an event that an automation turns
into the same flow run: that adds the automation's evaluation to every sync's latency, for no
gain when the caller already names the source.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from config.settings import Settings

WEBHOOK_TAG = "sync-webhook"
"""The tag of a flow run the sync webhook started: `sluice deploy` runs these warm
(`flows/webhook_runs.py`)."""

RUNNER_GRACE_S = 2.0
"""A webhook's run is due this long after the request: `sluice deploy` claims it at once and
runs it warm; Prefect's runner (which looks only for runs already due) or a worker of the
deployment's pool takes it after that, when no `sluice deploy` has."""

STATE_FILE = "server.json"
"""Where the data dir's own Prefect server records its address (`flows/local_server.py`)."""


RETRIED = (408, 429, 502, 503)
"""What Prefect's own client retries: a busy server (its SQLite database locked by another
request, say) answers 503 to one of several calls at once."""
RETRIES = 5


class RunsUnavailable(Exception):
    """No Prefect server answers, or it has no deployment for the source."""


def running_server(home: Path) -> str | None:
    """The data dir's own server's API URL, if it answers its health check now."""
    try:
        state = json.loads((home / STATE_FILE).read_text())
        response = httpx.get(f"{state['url']}/health", timeout=2.0)
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return None
    return str(state["url"]) if response.status_code == 200 else None


def prefect_home(settings: Settings) -> Path:
    """Where the data dir's Prefect server keeps its database and `server.json`: PREFECT_HOME
    as `load_settings` set it (or the user did), else the data dir's own."""
    return Path(os.environ.get("PREFECT_HOME") or settings.prefect_home)


def prefect_api_url(home: Path) -> str | None:
    """PREFECT_API_URL's server, else the data dir's own while it runs."""
    return os.environ.get("PREFECT_API_URL") or running_server(home)


@dataclass(frozen=True)
class FlowRunState:
    run_id: str
    name: str
    deployment: str | None
    state: str
    """Prefect's state type: SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CRASHED, ..."""
    state_name: str
    parameters: dict[str, Any]


class PrefectRuns:
    def __init__(self, home: Path, timeout_s: float = 10.0) -> None:
        self.home = home
        self.timeout_s = timeout_s

    def start(self, source: str, parameters: dict[str, Any]) -> FlowRunState:
        deployment = self._call("GET", f"/deployments/name/ingest/{source}", what=source)
        due = datetime.now(UTC) + timedelta(seconds=RUNNER_GRACE_S)
        run = self._call(
            "POST",
            f"/deployments/{deployment['id']}/create_flow_run",
            json={
                "parameters": {**deployment.get("parameters", {}), **parameters},
                "tags": [WEBHOOK_TAG],
                "state": {
                    "type": "SCHEDULED",
                    "state_details": {"scheduled_time": due.isoformat()},
                },
            },
        )
        return _state(run, f"ingest/{source}")

    def status(self, run_id: str) -> FlowRunState | None:
        try:
            run = self._call("GET", f"/flow_runs/{run_id}")
        except LookupError:
            return None
        return _state(run, None)

    def _call(self, method: str, path: str, what: str = "", **body: Any) -> dict[str, Any]:
        api = prefect_api_url(self.home)
        if api is None:
            raise RunsUnavailable(
                "no Prefect server answers (set PREFECT_API_URL, or run `sluice deploy`)"
            )
        for attempt in range(RETRIES + 1):
            try:
                response = httpx.request(method, f"{api}{path}", timeout=self.timeout_s, **body)
            except httpx.HTTPError as error:
                if attempt == RETRIES:
                    raise RunsUnavailable(
                        f"the Prefect server at {api} did not answer: {error}"
                    ) from error
            else:
                if response.status_code not in RETRIED or attempt == RETRIES:
                    break
            time.sleep(random.uniform(0.5, 1.0) * 2**attempt * 0.2)
        if response.status_code == 404:
            if what:
                raise RunsUnavailable(
                    f"no deployment ingest/{what} on {api}: `sluice deploy` registers it"
                )
            raise LookupError(path)
        if response.status_code >= 400:
            raise RunsUnavailable(f"the Prefect server answered {response.status_code}")
        result: dict[str, Any] = response.json()
        return result


def _state(run: dict[str, Any], deployment: str | None) -> FlowRunState:
    state = run.get("state") or {}
    return FlowRunState(
        run_id=str(run["id"]),
        name=str(run.get("name", "")),
        deployment=deployment,
        state=str(state.get("type", "SCHEDULED")),
        state_name=str(state.get("name", "")),
        parameters=dict(run.get("parameters") or {}),
    )
