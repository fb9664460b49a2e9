"""`sluice serve`, `query` and `demo`: the retrieval API and asking it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from config.settings import Settings
from sluice.cli.common import (
    REPO_DOCS,
    console,
    load_settings,
    out,
    report_table,
)
from sluice.cli.ingest_commands import print_report, run_ingest


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Serve POST /retrieve, /health, /ready and the OpenAPI docs at /docs.

    API keys are required whenever the address is not loopback (SLUICE_AUTH=auto)."""
    settings = load_settings()
    if host:
        settings = settings.model_copy(update={"api_host": host})
    import uvicorn

    from retrieval_api.access import auth_required, key_store
    from retrieval_api.app import create_app

    if auth_required(settings) and not key_store(settings).records():
        console.print(
            "[yellow]API keys are required here and none exist yet:[/yellow] every request "
            "will get 401 until `sluice keys create --tenant T` makes one",
            soft_wrap=True,
        )
    elif not auth_required(settings):
        console.print(
            f"[yellow]serving without API keys[/yellow] ({settings.api_host} is loopback, "
            f"SLUICE_AUTH={settings.auth}): every caller on this machine reads every tenant; "
            "SLUICE_AUTH=required and `sluice keys create --tenant T` to require keys",
            soft_wrap=True,
        )
    from retrieval_api.server import server_config

    server = uvicorn.Server(server_config(create_app(settings), settings, port))
    server.run()
    if not server.started:  # as uvicorn.run: the port was taken, or the app failed to start
        raise SystemExit(3)


def _api_url(settings: Settings) -> str | None:
    """A running `sluice serve` of this deployment and index, if one answers on the configured
    port; an API of another deployment there is refused rather than asked."""
    import httpx

    from composition.components import Components

    url = f"http://{settings.api_host}:{settings.api_port}"
    try:
        answer = httpx.get(f"{url}/health", timeout=0.5)
        answer.raise_for_status()
        health = answer.json()
    except (httpx.HTTPError, ValueError):
        return None
    ours = Components(settings).deployment_id()
    if health.get("deployment") != ours:
        console.print(_another_deployment(url, health, settings, ours), soft_wrap=True)
        raise typer.Exit(2)
    if health.get("index") != settings.index_name:
        return None  # the API serves another index of this deployment: ask the store directly
    return url


def _another_deployment(url: str, health: dict[str, str], settings: Settings, ours: str) -> str:
    """The mismatch, naming both data dirs (an API on loopback says which it serves) and the
    variable that points this command at the API's."""
    mine = settings.qdrant_url or str(settings.data_dir.resolve())
    theirs = health.get("data_dir")
    if theirs:
        return (
            f"[red]the API on {url} serves the data dir {theirs}[/red], not this command's "
            f"SLUICE_DATA_DIR ({mine}): run `export SLUICE_DATA_DIR={theirs}` to use that "
            "API's data, or set SLUICE_API_PORT to this data dir's API, or stop the other one"
        )
    return (
        f"[red]the API on {url} serves another deployment[/red] "
        f"({health.get('deployment') or 'unknown'}), not this command's ({mine}, {ours}): set "
        "SLUICE_DATA_DIR (or SLUICE_QDRANT_URL) to that API's data, or SLUICE_API_PORT to this "
        "deployment's API, or stop the other one"
    )


def query(
    text: Annotated[str, typer.Argument(help="The query.")],
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
    top_k: Annotated[int, typer.Option(help="Number of hits.")] = 5,
    index: Annotated[str | None, typer.Option(help="Index (alias) name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw response.")] = False,
    key: Annotated[
        str | None,
        typer.Option(envvar="SLUICE_API_KEY", help="API key (sluice keys create); its tenants."),
    ] = None,
) -> None:
    """Print ranked results, through a running `sluice serve` if there is one, else in-process."""
    settings = load_settings(index)
    body = {"query": text, "mode": mode, "top_k": top_k}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = _api_url(settings)
    if url:
        import httpx

        http_answer = httpx.post(f"{url}/retrieve", json=body, headers=headers, timeout=60)
        response = http_answer.json()
        if http_answer.status_code != 200:
            console.print(f"[red]{response.get('error', {}).get('message', '')}[/red]")
            raise typer.Exit(2)
    else:
        from fastapi.testclient import TestClient

        from retrieval_api.app import create_app

        with TestClient(create_app(settings), base_url="http://localhost") as client:
            answer = client.post("/retrieve", json=body, headers=headers)
            response = answer.json()
        if answer.status_code != 200:
            console.print(f"[red]{response.get('error', {}).get('message', answer.text)}[/red]")
            raise typer.Exit(2)
    if as_json:
        out.print_json(json.dumps(response))
        return
    if not response["hits"]:
        out.print("no hits (is the index empty?)")
        return
    table = report_table(f"{mode}: {text}", ("#", "score", "document", "pages", "text"))
    for hit in response["hits"]:
        snippet = " ".join(hit["text"].split())[:160]
        where = hit["title"] or hit["uri"]
        table.add_row(
            str(hit["rank"]),
            f"{hit['score']:.4f}",
            where,
            ",".join(map(str, hit["pages"])),
            snippet,
        )
    out.print(table)


def demo(
    path: Annotated[Path, typer.Option(help="Corpus to ingest.")] = REPO_DOCS,
    port: Annotated[int | None, typer.Option(help="Port to serve on.")] = None,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Ingest the project's own documentation, then serve /retrieve on 127.0.0.1."""
    settings = load_settings()
    report = run_ingest(settings, None, path, False, show_progress=sys.stderr.isatty())
    print_report(report)
    port = port or settings.api_port
    data_dir = settings.data_dir.resolve()
    where = (
        f"set by SLUICE_DATA_DIR: in another terminal, first `export SLUICE_DATA_DIR={data_dir}`"
        if os.environ.get("SLUICE_DATA_DIR")
        else f"the default: every sluice command run in {Path.cwd()} uses it"
    )
    out.print(
        f"\n[bold]Data dir[/bold] {data_dir} ({where})\n"
        "[bold]Query it[/bold] (in another terminal, in this folder):\n"
        f"  curl -s http://127.0.0.1:{port}/retrieve -H 'content-type: application/json' "
        '-d \'{"query": "How does Sluice keep re-ingestion free of duplicates?", "top_k": 3}\'\n'
        f'  .venv/bin/sluice query "which embedded Qdrant engine does Sluice use?"\n'
        f"  API docs: http://127.0.0.1:{port}/docs\n",
        soft_wrap=True,
    )
    if serve_api:
        serve(host="127.0.0.1", port=port)
