"""`sluice log show REQUEST_ID`: a logged `/retrieve` answer, found through the query log's
index in the state database, whichever API process or machine gave it."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from sluice.cli.common import exit_on, index_errors, load_settings, out, report_table

app = typer.Typer(help="The query log: what each `/retrieve` answered.", no_args_is_help=True)

RECORD_COLUMNS = ("query", "query_hash", "mode", "top_k", "rerank", "latency_ms", "collection")


def logged_answers(request_id: str) -> list[dict[str, Any]]:
    """Newest first; each with its whole record's main columns where its file is readable from
    here (`record`: null on another host, or once the log's bound has dropped the file)."""
    from composition.components import Components
    from index.query_log_index import QueryLogIndex

    index = QueryLogIndex(Components(load_settings()).state("shared"))
    try:
        found = index.answers(request_id)
    finally:
        index.close()
    return [{**asdict(answer), "record": _record(answer.file, request_id)} for answer in found]


def _record(file: str, request_id: str) -> dict[str, Any] | None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not Path(file).is_file():
        return None
    table = pq.read_table(file, columns=["request_id", *RECORD_COLUMNS])
    rows = table.filter(pc.equal(table["request_id"], request_id)).to_pylist()
    return {column: rows[0][column] for column in RECORD_COLUMNS} if rows else None


@app.command()
def show(
    request_id: Annotated[str, typer.Argument(help="An answer's X-Request-ID.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Who asked, what was answered, and which host's log file holds the whole record."""
    with exit_on("log show", *index_errors()):
        answers = logged_answers(request_id)
    if as_json:
        out.print_json(json.dumps(answers))
        return
    if not answers:
        out.print(f"no logged answer has request id {request_id} (the log is written every few s)")
        raise typer.Exit(1)
    table = report_table(f"Request {request_id}", ["field", "value"])
    for answer in answers:
        moment = datetime.fromtimestamp(answer.pop("time"), UTC).isoformat(timespec="seconds")
        table.add_row("time", moment)
        for name, value in {**answer, **(answer.pop("record") or {})}.items():
            table.add_row(name, ", ".join(value) if isinstance(value, tuple | list) else str(value))
        table.add_section()
    out.print(table)
