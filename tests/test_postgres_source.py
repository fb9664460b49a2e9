"""A PostgreSQL query as a source, against a real PostgreSQL server the suite starts: rows are
documents, edits and deletes propagate, listing never reads the text, and a trigger's
NOTIFY makes a live source sync the changed row alone."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from composition.components import Components
from composition.live_source import watch_source
from config.settings import Settings
from config.sources import PostgresConfig
from ingest.sources.build import build_source
from pipelines.report import IngestReport
from tests.conftest import sync, until_report

ROW = "postgres://faq/"
TRIGGER = """
CREATE FUNCTION faq_changed() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('faq_changes', COALESCE(NEW.id, OLD.id)::text);
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER faq_changed AFTER INSERT OR UPDATE OR DELETE ON faq
  FOR EACH ROW EXECUTE FUNCTION faq_changed();
"""


@pytest.fixture
def faq(postgres_url: str) -> str:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE faq (id integer PRIMARY KEY, title text, body text, public boolean,"
            " updated_at timestamptz DEFAULT now())"
        )
        for n in range(6):
            db.execute(
                "INSERT INTO faq (id, title, body, public) VALUES (%s, %s, %s, true)",
                (n, f"Question {n}", f"The pump {n} needs a new seal every spring."),
            )
        db.execute("INSERT INTO faq VALUES (99, 'Internal', 'Never indexed.', false, now())")
        db.execute(TRIGGER)
    return postgres_url


def _config(url: str, **more: object) -> PostgresConfig:
    return PostgresConfig.model_validate(
        {
            "name": "faq", "url": url, "query": "SELECT * FROM faq WHERE public",
            "id_column": "id", "template": "# {title}\n\n{body}\n", **more,
        }
    )  # fmt: skip


@pytest.mark.parametrize("updated_at", [None, "updated_at"])
def test_rows_are_documents_whose_edits_and_deletes_propagate(
    faq: str, tmp_path: Path, embedder: object, updated_at: str | None
) -> None:
    config = _config(faq, updated_at_column=updated_at)
    settings = Settings(data_dir=tmp_path / "data")
    first: IngestReport = sync(settings, build_source(config), embedder, "faq")
    assert sorted(d.uri for d in first.new) == [f"postgres://faq/{n}" for n in range(6)]
    assert first.chunks == 6 and f"{ROW}99" not in str(first.to_dict()), "the query's rows only"
    with psycopg.connect(faq, autocommit=True) as db:
        db.execute("UPDATE faq SET body = 'A ceramic seal lasts years.', updated_at = now()"
                   " WHERE id = 2")  # fmt: skip
        db.execute("DELETE FROM faq WHERE id = 4")
    second: IngestReport = sync(settings, build_source(config), embedder, "faq")
    assert [d.uri for d in second.changed] == ["postgres://faq/2"]
    assert second.deleted == ["postgres://faq/4"] and second.unchanged == 4
    third: IngestReport = sync(settings, build_source(config), embedder, "faq")
    assert third.unchanged == 5 and third.stage_seconds["read_parse"] == 0, "nothing read"


def test_metadata_columns_ride_with_the_hits_and_a_change_to_one_rewrites_the_row(
    faq: str, tmp_path: Path, embedder: object
) -> None:
    from fastapi.testclient import TestClient

    from retrieval_api.app import create_app

    with psycopg.connect(faq, autocommit=True) as db:
        db.execute("ALTER TABLE faq ADD COLUMN category text DEFAULT 'pumps'")
        db.execute("UPDATE faq SET category = NULL WHERE id = 5")
    config = _config(faq, metadata_columns=["category", "id"])
    settings = Settings(data_dir=tmp_path / "data")
    sync(settings, build_source(config), embedder, "faq")

    def metadata() -> dict[str, dict[str, str]]:
        with TestClient(create_app(settings), base_url="http://localhost") as client:
            body = {"query": "pump seal spring", "mode": "bm25", "top_k": 10}
            hits = client.post("/retrieve", json=body).json()["hits"]
        return {hit["uri"].removeprefix(ROW): hit["metadata"] for hit in hits}

    assert metadata() == {
        **{str(n): {"category": "pumps", "id": str(n)} for n in range(5)},
        "5": {"id": "5"},  # a NULL is left out
    }
    with psycopg.connect(faq, autocommit=True) as db:
        db.execute("UPDATE faq SET category = 'valves' WHERE id = 3")  # the text stays
    changed: IngestReport = sync(settings, build_source(config), embedder, "faq")
    assert [d.uri for d in changed.changed] == [f"{ROW}3"] and changed.unchanged == 5
    assert metadata()["3"] == {"category": "valves", "id": "3"}
    wrong = sync(settings, build_source(_config(faq, metadata_columns=["nope"])), embedder, "faq")
    assert {d.reason for d in wrong.failed} == {"the query's rows have no column 'nope'"}


def test_a_live_source_syncs_the_notified_row_alone(faq: str, tmp_path: Path) -> None:
    config = _config(faq, notify_channel="faq_changes", live=True)
    parts = Components(Settings(data_dir=tmp_path / "data"))
    reports: list[IngestReport] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_source, args=(parts, config, stop, reports.append), daemon=True
    )
    thread.start()

    try:
        until_report(reports, lambda r: not r.live and len(r.new) == 6, "reconciling the table")
        with psycopg.connect(faq, autocommit=True) as db:
            db.execute(
                "INSERT INTO faq (id, title, body, public) VALUES (7, 'New', 'Valves.', true)"
            )
        report = until_report(reports, lambda r: r.live and len(r.new) == 1, "the inserted row")
        assert report.new[0].uri == "postgres://faq/7" and report.files_seen == 1
        with psycopg.connect(faq, autocommit=True) as db:
            db.execute("DELETE FROM faq WHERE id = 1")
        until_report(
            reports, lambda r: r.live and r.deleted == ["postgres://faq/1"], "the deleted row"
        )
        with psycopg.connect(faq, autocommit=True) as db:
            db.execute("UPDATE faq SET public = false WHERE id = 3")  # leaves the query
        until_report(
            reports, lambda r: r.live and r.deleted == ["postgres://faq/3"], "the row that left"
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_postgres_source_needs_text_and_a_channel_to_be_live() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="one of `text_column` or `template`"):
        PostgresConfig(name="x", url="postgresql://h/d", query="SELECT 1", id_column="id")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="needs `notify_channel`"):
        _config("postgresql://h/d", live=True)
