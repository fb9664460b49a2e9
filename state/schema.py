"""Versioned schemas: a state database is brought to the revision this Sluice knows, or refused.

Alembic keeps the migrations (`state/migrations/<tree>/versions`). A SQLite file (one machine,
one installation) is upgraded in place when opened. A PostgreSQL schema is made when first
opened, but an older one is only upgraded by `sluice state upgrade`: other workers and replicas
of an older Sluice may still be using it, and an operator upgrades when they are. A revision this
Sluice does not know (a newer Sluice wrote it) is refused either way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, text

from state.database import StateDatabase

UPGRADE_COMMAND = "sluice state upgrade"


class StateSchemaError(RuntimeError):
    """The state database is at a revision this Sluice will not use as it is."""


@dataclass(frozen=True)
class SchemaStatus:
    tree: str
    where: str
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _config(tree: str) -> Config:
    config = Config()
    config.set_main_option("script_location", f"state:migrations/{tree}")
    return config


@functools.cache
def _scripts(tree: str) -> ScriptDirectory:
    """The migrations of a tree, read once per process (each open of a manifest checks them)."""
    return ScriptDirectory.from_config(_config(tree))


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision(tree: str) -> str:
    """The revision this Sluice makes and needs for a tree of tables."""
    head = _scripts(tree).get_current_head()
    assert head is not None
    return head


def status(db: StateDatabase) -> SchemaStatus:
    head = head_revision(db.tree)
    if db.dialect == "sqlite" and not Path(str(db.engine.url.database)).exists():
        return SchemaStatus(db.tree, db.where, None, head)  # not made by looking
    with db.reading() as connection:
        current = _revision(connection) if _namespace_exists(db, connection) else None
    return SchemaStatus(db.tree, db.where, current, head)


def ensure_schema(db: StateDatabase, upgrade_older: bool | None = None) -> None:
    """Makes a new state database's tables; upgrades an older one where that is safe
    (`upgrade_older`, by default on SQLite only); refuses one it does not know."""
    if upgrade_older is None:
        upgrade_older = db.dialect == "sqlite"
    config = _config(db.tree)
    script = _scripts(db.tree)
    head = script.get_current_head()
    if status(db).current == head:  # what nearly every open finds, without a write lock
        return
    with db.transaction() as connection:  # one process migrates; the others then find it done
        if db.dialect == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                {"name": f"sluice-schema:{db.namespace}"},
            )
            connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {db.namespace}")
        current = _revision(connection)
        if current == head:
            return
        if current is not None:
            try:
                script.get_revision(current)
            except CommandError as error:
                raise StateSchemaError(
                    f"the state at {db.where} is at schema revision {current}, which this "
                    f"version of Sluice does not know (it knows up to {head}): a newer Sluice "
                    "wrote it; upgrade Sluice here to the version the other processes run"
                ) from error
            if not upgrade_older:
                raise StateSchemaError(
                    f"the state at {db.where} is at schema revision {current} and this version "
                    f"of Sluice needs {head}; once every process using it runs this version, "
                    f"upgrade it with `{UPGRADE_COMMAND}`"
                )
        elif db.tree == "index" and db.dialect == "sqlite" and _has_table(connection, "documents"):
            _adopt_unversioned_manifest(connection)
            config.attributes["connection"] = connection
            command.stamp(config, "0001")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def upgrade(db: StateDatabase) -> SchemaStatus:
    """What `sluice state upgrade` does: every migration this Sluice knows, applied."""
    ensure_schema(db, upgrade_older=True)
    return status(db)


def _namespace_exists(db: StateDatabase, connection: Connection) -> bool:
    if db.dialect != "postgresql":
        return True
    found = connection.execute(
        text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"),
        {"name": db.namespace},
    )
    return found.first() is not None


def _has_table(connection: Connection, name: str) -> bool:
    found = connection.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": name}
    )
    return found.first() is not None


def _adopt_unversioned_manifest(connection: Connection) -> None:
    """A manifest from before versioned schemas. One from before documents were a source's
    (`doc_id` alone was the key) is rewritten first, keeping every row: each doc_id had one row,
    so it stays unique under (source, doc_id). The other tables were as revision 0001 makes
    them; a manifest that never had them gets them."""
    keyed = connection.exec_driver_sql(
        "SELECT pk FROM pragma_table_info('documents') WHERE name = 'source'"
    ).scalar()
    if not keyed:
        connection.exec_driver_sql(_DOCUMENTS.format(name="documents_by_origin"))
        connection.exec_driver_sql("INSERT INTO documents_by_origin SELECT * FROM documents")
        connection.exec_driver_sql("DROP TABLE documents")
        connection.exec_driver_sql("ALTER TABLE documents_by_origin RENAME TO documents")
    for statement in _OTHER_TABLES.split(";"):
        if statement.strip():
            connection.exec_driver_sql(statement)


_DOCUMENTS = """
CREATE TABLE {name} (
    doc_id TEXT NOT NULL, source TEXT NOT NULL, fingerprint TEXT NOT NULL,
    content_hash TEXT NOT NULL, config_fingerprint TEXT NOT NULL, doc_version TEXT NOT NULL,
    chunks INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL, PRIMARY KEY (source, doc_id)
)"""

_OTHER_TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, dry_run INTEGER NOT NULL DEFAULT 0, report TEXT
);
CREATE TABLE IF NOT EXISTS run_outcomes (
    run_id INTEGER PRIMARY KEY REFERENCES runs (run_id), state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '', pid INTEGER, external_id TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    collection TEXT PRIMARY KEY, state TEXT NOT NULL, scores TEXT NOT NULL DEFAULT '{}',
    note TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL
)"""
