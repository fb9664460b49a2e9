"""Configuration errors as one line each, naming the key and what to write instead."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from config.sources import HttpConfig, LocalFolderConfig, PostgresConfig, S3Config

SOURCE_MODELS: dict[str, type[BaseModel]] = {
    "local": LocalFolderConfig,
    "s3": S3Config,
    "http": HttpConfig,
    "postgres": PostgresConfig,
}


def explain(error: ValidationError, settings_fields: Iterable[str]) -> list[str]:
    """One line per problem: `where: what (did you mean 'x'?)`."""
    lines = []
    for problem in error.errors():
        loc = [str(part) for part in problem["loc"]]
        where, known = _place(loc, list(settings_fields))
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
            message = "unknown key" + (f"; did you mean '{close[0]}'?" if close else "")
        elif problem["type"] in ("union_tag_not_found", "union_tag_invalid"):
            kinds = ", ".join(f"'{kind}'" for kind in SOURCE_MODELS)
            message = f'`type` must be one of {kinds} (a local folder: type = "local")'
            given = str((problem.get("ctx") or {}).get("tag", ""))
            close = difflib.get_close_matches(given, list(SOURCE_MODELS), n=1, cutoff=0.6)
            if close:
                message = f"unknown type '{given}'; did you mean '{close[0]}'?"
        lines.append(f"{where}: {message.removeprefix('Value error, ')}")
    return lines


def _place(loc: list[str], settings_fields: list[str]) -> tuple[str, list[str]]:
    """A readable location (`sources[1].schedul`) and the keys valid there."""
    if loc and loc[0] == "sources" and len(loc) > 1:
        index, rest = loc[1], loc[2:]
        model = SOURCE_MODELS.get(rest[0]) if rest else None
        if model is not None:
            rest = rest[1:]
        where = f"sources[{index}]" + "".join(
            f"[{part}]" if part.isdigit() else f".{part}" for part in rest
        )
        return where, list(model.model_fields) if model else []
    return ".".join(loc) or "configuration", settings_fields
