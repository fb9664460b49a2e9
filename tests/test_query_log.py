"""The query log: one record per `/retrieve` call, read back with pyarrow; query text off keeps
only a keyed hash; files stay within their bound and a past day is merged into one file."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from config.settings import Settings
from index.query_log import SCHEMA, QueryLog, _write_aside, read_query_log
from retrieval_api.app import create_app
from retrieval_api.keys import KeyStore
from sluice.cli.main import app
from tests.conftest import ingest_folder


@pytest.fixture
def indexed(tmp_path: Path, embedder) -> Settings:  # type: ignore[no-untyped-def]
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    (folder / "seal.md").write_text("# Seal\n\nThe seal leaks oil when worn.\n")
    settings = Settings(data_dir=tmp_path / "data", auth="required")
    ingest_folder(settings, folder, embedder, source_name="acme", tenant="acme")
    return settings


def test_every_call_is_one_record_with_what_was_answered(
    indexed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeyStore(indexed.api_keys_path)
    secret, record = keys.create(["acme"])
    headers = {"Authorization": f"Bearer {secret}"}
    calls = [
        {"query": "what wears out", "top_k": 2},
        {"query": "seal", "mode": "bm25", "filters": {"metadata": {"filetype": "md"}}},
        {"query": "what   wears out", "top_k": 2},  # the same query, normalised: a cache hit
    ]
    answers = []
    with TestClient(create_app(indexed), base_url="http://localhost") as client:
        for number, body in enumerate(calls):
            response = client.post(
                "/retrieve", json=body, headers={**headers, "X-Request-ID": f"call-{number}"}
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-request-id"] == f"call-{number}"
            answers.append(response.json())
        client.post("/retrieve", json={"query": ""}, headers=headers)  # refused: not a retrieval
    rows = read_query_log(indexed.query_log_dir).to_pylist()  # the app flushed as it stopped
    assert [row["request_id"] for row in rows] == ["call-0", "call-1", "call-2"]
    for row, answer in zip(rows, answers, strict=True):
        assert row["chunk_ids"] == [hit["chunk_id"] for hit in answer["hits"]]
        assert row["scores"] == pytest.approx([hit["score"] for hit in answer["hits"]])
        assert row["collection"] == answer["index"]["collection"] == "docs__v1"
        assert row["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert row["key_id"] == record.key_id and row["tenants"] == ["acme"]
        assert row["latency_ms"] > 0 and row["cpu_ms"] >= 0 and row["query_tokens"] > 0
        assert row["cache"] == answer["cache"]
        assert math.isclose(row["cost_estimate"], answer["cost"]["estimated_cost"])
        assert row["time"].tzinfo is not None
    first, bm25, repeated = rows
    assert first["query"] == "what wears out" and first["mode"] == "hybrid" and first["top_k"] == 2
    assert first["embed_ms"] > 0 and first["fusion_ms"] is not None
    assert 0 <= first["dense_bm25_agreement"] <= 1 and first["top_margin"] is not None
    assert first["dense_scores"][0] is not None and first["bm25_scores"] is not None
    assert bm25["mode"] == "bm25" and bm25["filters"] == '{"metadata": {"filetype": "md"}}'
    assert bm25["embed_ms"] is None and bm25["dense_bm25_agreement"] is None
    assert repeated["cache"] == "hit" and repeated["query"] == "what wears out"
    assert repeated["query_hash"] == first["query_hash"]
    assert repeated["chunk_ids"] == first["chunk_ids"]
    for column in ("dense_scores", "bm25_scores", "fused_scores", "dense_bm25_agreement"):
        assert repeated[column] == first[column], f"a cached answer keeps {column}"
    assert answers[2]["hits"] == answers[0]["hits"], "stage scores and ranks too"
    # The folders are hive partitions: pyarrow (and DuckDB) read the day as a column.
    table = ds.dataset(indexed.query_log_dir, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 3 and "date" in table.column_names
    # The query log's index finds an answer by its request id, with the file that holds it.
    monkeypatch.setenv("SLUICE_DATA_DIR", str(indexed.data_dir))
    shown = CliRunner().invoke(app, ["log", "show", "call-1", "--json"])
    assert shown.exit_code == 0, shown.output
    [logged] = json.loads(shown.stdout)
    assert logged["chunk_ids"] == [hit["chunk_id"] for hit in answers[1]["hits"]]
    assert logged["key_id"] == record.key_id and logged["tenants"] == ["acme"]
    assert logged["record"]["query"] == "seal" and logged["record"]["mode"] == "bm25"
    assert Path(logged["file"]).parent.parent == indexed.query_log_dir
    assert CliRunner().invoke(app, ["log", "show", "call-9"]).exit_code == 1


def test_query_text_off_keeps_only_a_keyed_hash(indexed: Settings) -> None:
    settings = indexed.model_copy(update={"query_log_text": False, "auth": "off"})
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        for query in ("seal leaks", "seal leaks", "impeller"):
            assert client.post("/retrieve", json={"query": query}).status_code == 200
    rows = read_query_log(settings.query_log_dir).to_pylist()
    assert [row["query"] for row in rows] == [None, None, None]
    hashes = [row["query_hash"] for row in rows]
    assert hashes[0] == hashes[1] != hashes[2]
    logged = [{k: v for k, v in row.items() if k != "doc_ids"} for row in rows]
    assert "seal" not in str(logged) and "impeller" not in str(logged), "no trace of the text"
    # Keyed: the hash is not the plain SHA-256 of the query, which anyone could recompute.
    import hashlib

    assert hashes[0] != hashlib.sha256(b"seal leaks").hexdigest()[:32]
    assert (settings.query_log_dir / ".hash-key").stat().st_mode & 0o077 == 0


def _row(number: int) -> dict[str, object]:
    return {
        "request_id": f"r{number}",
        "time": datetime.now(UTC),
        "query": "x" * 200 + str(number),
        "chunk_ids": [f"chunk-{number}-{i}" for i in range(10)],
        "latency_ms": 1.0,
    }


def test_the_log_stays_within_its_bound_and_keeps_the_newest(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / "log", max_bytes=40_000, flush_rows=10, flush_s=3600)
    for number in range(400):
        log.record(_row(number))
        if number % 10 == 9:
            log.flush()
    log.close()
    files = log.files()
    total = sum(f.stat().st_size for f in files)
    assert total <= 40_000 and len(files) < 40, "the oldest files went"
    ids = read_query_log(tmp_path / "log").column("request_id").to_pylist()
    assert ids[-1] == "r399" and ids == [f"r{n}" for n in range(400 - len(ids), 400)]


def test_a_past_day_is_merged_into_one_file(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    past = directory / "date=2026-01-31"
    past.mkdir(parents=True)
    for part in range(3):
        rows = [_row(part * 10 + i) for i in range(10)]
        import pyarrow as pa

        _write_aside(pa.Table.from_pylist(rows, schema=SCHEMA), past / f"part-{part}-1.parquet")
    log = QueryLog(directory, flush_s=3600)
    log.record(_row(99))
    log.close()
    assert len(list(past.glob("*.parquet"))) == 1
    assert read_query_log(directory).num_rows == 31


def test_unknown_columns_are_refused(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / "log", flush_s=3600)
    with pytest.raises(ValueError, match="not query log columns"):
        log.record({"request_id": "r", "qeury": "typo"})
    log.close()


def test_an_answer_is_pending_until_its_index_row_exists(tmp_path: Path) -> None:
    """`/feedback` finds an answer in the buffer, then in the index: never in neither (a batch
    being written and indexed is still pending; it was not, and every 1,000th answer was lost)."""
    import threading

    from index.query_log_index import QueryLogIndex
    from state.database import StateDatabase

    class SlowLog(QueryLog):
        def _write(self, rows: list[dict[str, Any]]) -> Path:
            writing.set()
            assert proceed.wait(10)
            return super()._write(rows)

    writing, proceed = threading.Event(), threading.Event()
    index = QueryLogIndex(StateDatabase.sqlite(tmp_path / "state.sqlite", "shared"))
    log = SlowLog(tmp_path / "log", flush_rows=1, flush_s=3600, index=index)
    log.record(_row(1))  # a full buffer: the background thread writes it
    assert writing.wait(10)
    assert [r["request_id"] for r in log.pending("r1")] == ["r1"], "lost between the two"
    proceed.set()
    deadline = time.monotonic() + 10
    while log.pending("r1") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.pending("r1") == [] and [a.key_id for a in index.answers("r1")] == [None]
    log.close()
