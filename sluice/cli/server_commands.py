"""`sluice server status|stop`: the data dir's own Prefect server, which outlives the commands
that start it (until `SLUICE_PREFECT_SERVER_IDLE_MINUTES` without a request)."""

from __future__ import annotations

import json
import os
import time
from typing import Annotated, Any

import typer

from config.settings import Settings
from sluice.cli.common import console, load_settings, out, prefect_hint, prefect_home

app = typer.Typer(
    help="The data dir's Prefect server: where it is, and stopping it.", no_args_is_help=True
)


def _described(state: dict[str, Any] | None, settings: Settings) -> dict[str, Any]:
    body: dict[str, Any] = {
        "data_dir": str(settings.data_dir.resolve()),
        "prefect_home": str(prefect_home(settings)),
        "idle_minutes": settings.prefect_server_idle_minutes,
        "running": state is not None,
    }
    if state:
        body |= {
            "pid": state["pid"],
            "api": state["url"],
            "ui": state["url"].removesuffix("/api"),
            "started_at": state.get("started_at"),
            "answers": state.get("answers", False),
        }
    return body


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Whether the data dir's Prefect server runs, its UI and API address, its process."""
    from flows.local_server import recorded_server

    settings = load_settings(reads_only=True)
    elsewhere = os.environ.get("PREFECT_API_URL")
    body = _described(recorded_server(prefect_home(settings)), settings)
    body["prefect_api_url"] = elsewhere
    if as_json:
        out.print_json(json.dumps(body))
        return
    if elsewhere:
        out.print(
            f"PREFECT_API_URL is set: runs are recorded on {elsewhere}, not on a server of this "
            "data dir's own",
            soft_wrap=True,
        )
    if not body["running"]:
        out.print(
            f"no Prefect server runs for the data dir {body['data_dir']}; the next command that "
            "records a run starts one",
            soft_wrap=True,
        )
        return
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(body["started_at"] or 0))
    out.print(
        f"Prefect server of the data dir {body['data_dir']}: pid {body['pid']}, started "
        f"{started}, stops after {settings.prefect_server_idle_minutes:g} minutes without a "
        "request (SLUICE_PREFECT_SERVER_IDLE_MINUTES)"
        + (
            ""
            if body["answers"]
            else "; [yellow]it does not answer now[/yellow]: `sluice server stop`, and the next "
            "command starts a new one"
        ),
        soft_wrap=True,
    )
    out.print(prefect_hint(body["api"]), soft_wrap=True)


def stop(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Stop the data dir's Prefect server now (the next command that records a run starts it
    again; what it recorded stays in its database)."""
    from flows.local_server import stop_local_server

    settings = load_settings(reads_only=True)
    stopped = stop_local_server(prefect_home(settings))
    body = _described(stopped, settings) | {"stopped": stopped is not None, "running": False}
    if as_json:
        out.print_json(json.dumps(body))
        return
    if stopped is None:
        console.print(f"no Prefect server runs for the data dir {body['data_dir']}")
        return
    out.print(f"stopped the Prefect server of {body['data_dir']} (pid {body['pid']})")


app.command()(status)
app.command()(stop)
