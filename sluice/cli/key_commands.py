"""`sluice keys create|list|revoke`: the API keys `/retrieve` accepts."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from sluice.cli.common import console, exit_on, load_settings, out, report_table

app = typer.Typer(help="API keys: who may call /retrieve, for which tenants.", no_args_is_help=True)

RATE = re.compile(r"^(\d+(?:\.\d+)?)/(s|sec|second|m|min|minute|h|hour)$")
PER_SECOND = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
PER_SECOND |= {"h": 3600, "hour": 3600}
DURATION = re.compile(r"^(\d+)([dhm])$")


def _rate(text: str | None) -> float | None:
    if text is None:
        return None
    found = RATE.match(text)
    if not found or float(found[1]) <= 0:
        raise ValueError(f"--rate {text!r}: write requests per time, e.g. 10/s or 600/min")
    return float(found[1]) / PER_SECOND[found[2]]


def _expiry(text: str | None) -> float | None:
    """`30d`, `12h`, `90m`, or an ISO date/time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if found := DURATION.match(text):
        return time.time() + int(found[1]) * {"d": 86400, "h": 3600, "m": 60}[found[2]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--expires {text!r}: write 30d, 12h, 90m or an ISO date") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@app.command()
def create(
    tenant: Annotated[
        list[str] | None, typer.Option(help="A tenant the key reads (repeatable).")
    ] = None,
    scope: Annotated[
        str, typer.Option(help="retrieve, or admin (every tenant, full file paths).")
    ] = "retrieve",
    rate: Annotated[str | None, typer.Option(help="Rate limit, e.g. 10/s or 600/min.")] = None,
    burst: Annotated[
        int | None, typer.Option(min=1, help="Requests at once (default: rate)")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="30d, 12h, 90m or an ISO date.")] = None,
    name: Annotated[str, typer.Option(help="A label, e.g. who holds it.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Make a key; it is shown once, here, and stored only as a hash."""
    settings = load_settings()
    from retrieval_api.access import key_store
    from retrieval_api.keys import KeyStoreError

    with exit_on("keys create", ValueError, KeyStoreError):
        if scope not in ("retrieve", "admin"):
            raise ValueError(f"--scope {scope!r}: retrieve or admin")
        key, record = key_store(settings).create(
            tenant or [],
            scope,  # type: ignore[arg-type]
            _rate(rate),
            burst,
            _expiry(expires),
            name,
        )
    if as_json:
        out.print_json(json.dumps({"key": key, **record.public()}))
        return
    out.print(key, soft_wrap=True, highlight=False)
    console.print(
        f"key {record.key_id} for tenant(s) {', '.join(record.tenants)}, scope {record.scope}: "
        "store it now, it is not shown again. Send it as `Authorization: Bearer <key>`.",
        soft_wrap=True,
    )


@app.command(name="list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Every key: id, tenants, scope, limits, created, expires, revoked (never the key)."""
    settings = load_settings(reads_only=True)
    from retrieval_api.access import key_store

    records = [r.public() for r in key_store(settings).records().values()]
    if as_json:
        out.print_json(json.dumps(records))
        return
    table = report_table(
        "API keys", ("id", "name", "tenants", "scope", "rate/s", "created", "expires", "revoked")
    )
    for r in records:
        table.add_row(
            str(r["key_id"]),
            str(r["name"]),
            ", ".join(r["tenants"]),  # type: ignore[arg-type]
            str(r["scope"]),
            "" if r["rate_per_s"] is None else f"{r['rate_per_s']:g}",
            *(_when(r[k]) for k in ("created_at", "expires_at", "revoked_at")),  # type: ignore[arg-type]
        )
    out.print(table)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="minutes")


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (sluice keys list).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Stop a key working; the API refuses it from its next request."""
    settings = load_settings()
    from retrieval_api.access import key_store
    from retrieval_api.keys import KeyStoreError

    with exit_on("keys revoke", KeyStoreError):
        record = key_store(settings).revoke(key_id)
    if as_json:
        out.print_json(json.dumps(record.public()))
        return
    out.print(f"revoked {record.key_id}")
