"""A PostgreSQL table or query as a document source: one document per row, its id the row's id.

Listing reads ids and a fingerprint only, never the text: the `updated_at` column where there is
one, else an MD5 of the whole row that the database computes (`md5(row_to_json(q)::text)`), so
an unchanged row is recognised without being transferred; how a row becomes a document (its
text column or template, its metadata columns) is part of each fingerprint, so changing it
re-reads the rows. A row is read (`fetch`) only when its
fingerprint changed, and written as a Markdown file (its text column, or the template filled
from its columns) for the same parsing and chunking as any document. A row gone from the query
is a deleted document, under the same delete guard as a file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from config.sources import PostgresConfig
from ingest.types import ParseError, Scope, SourceFile, SourceItem, SourceUnavailable


class PostgresSource:
    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self.prefix = f"postgres://{quote(config.name, safe='')}/"
        shape = [config.text_column, config.template, config.metadata_columns]
        self._shape = hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:12]
        """How a row becomes a document: a change to it re-reads every row."""

    def uri(self, row_id: object) -> str:
        return self.prefix + quote(str(row_id), safe="")

    def row_id(self, uri: str) -> str:
        return unquote(uri.removeprefix(self.prefix))

    def skipped(self) -> list[tuple[str, str]]:
        return []

    def list_items(self) -> list[SourceItem]:
        return self._listed(None)

    def list_scope(self, scope: Scope) -> list[SourceItem]:
        """The rows whose uris `scope` names; a row gone is not listed (so deleted)."""
        ids = [self.row_id(uri) for uri in scope.uris if uri.startswith(self.prefix)]
        return self._listed(ids) if ids else []

    def fetch(self, item: SourceItem, folder: Path) -> SourceFile:
        from psycopg import sql

        query = sql.SQL("SELECT * FROM ({}) AS q WHERE {}::text = %s").format(
            sql.SQL(self.config.query), sql.Identifier(self.config.id_column)
        )
        rows = self._run(query, (self.row_id(item.uri),))
        if not rows:
            raise ParseError("gone from the query since it was listed")
        path = folder / f"row-{abs(hash(item.uri))}.md"
        path.write_text(self._text(rows[0]))
        metadata = self._metadata(rows[0])
        return SourceFile(item.uri, path, path.stat().st_size, 0.0, metadata)

    def _metadata(self, row: dict[str, Any]) -> dict[str, str]:
        if missing := [c for c in self.config.metadata_columns if c not in row]:
            raise ParseError(f"the query's rows have no column {', '.join(map(repr, missing))}")
        return {
            column: str(row[column])
            for column in self.config.metadata_columns
            if row[column] is not None
        }

    def _text(self, row: dict[str, Any]) -> str:
        if self.config.text_column is not None:
            return str(row.get(self.config.text_column) or "")
        assert self.config.template is not None
        try:
            return self.config.template.format(
                **{k: "" if v is None else v for k, v in row.items()}
            )
        except (KeyError, IndexError, ValueError) as error:
            raise ParseError(f"the template does not fit the row: {error!r}") from error

    def _listed(self, ids: Iterable[str] | None) -> list[SourceItem]:
        from psycopg import sql

        config = self.config
        fingerprint = (
            sql.SQL("{}::text").format(sql.Identifier(config.updated_at_column))
            if config.updated_at_column
            else sql.SQL("md5(row_to_json(q)::text)")
        )
        query = sql.SQL("SELECT {}::text AS id, {} AS fingerprint FROM ({}) AS q").format(
            sql.Identifier(config.id_column), fingerprint, sql.SQL(config.query)
        )
        parameters: tuple[Any, ...] = ()
        if ids is not None:
            query += sql.SQL(" WHERE {}::text = ANY(%s)").format(sql.Identifier(config.id_column))
            parameters = (list(ids),)
        return sorted(
            (
                SourceItem(
                    uri=self.uri(row["id"]),
                    name=f"{row['id']}.md",
                    size=None,
                    fingerprint=f"{row['fingerprint']}|{self._shape}",
                )
                for row in self._run(query, parameters)
            ),
            key=lambda item: item.uri,
        )

    def _run(self, query: Any, parameters: tuple[Any, ...]) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        try:
            with psycopg.connect(
                self.config.url.get_secret_value(), connect_timeout=10, row_factory=dict_row
            ) as connection:
                return list(connection.execute(query, parameters).fetchall())
        except psycopg.Error as error:
            raise SourceUnavailable(f"source '{self.config.name}': {error}".strip()) from error
