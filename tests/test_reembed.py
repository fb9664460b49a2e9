"""Re-embedding: a new version from stored chunks, the golden-set gate, catch-up of writes made
meanwhile, a switch that a running API follows without one failed request, rollback, retention,
dimension changes and query/passage prefixes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from composition.components import Components
from config.settings import EmbeddingPrompts, Settings
from flows.reembed_flow import run_reembed, run_rollback
from index.versions import active_spec
from ingest.manifest import Manifest
from pipelines.gate import GateUnavailable
from tests.conftest import free_port, ingest_folder
from tests.derived_models import weakened, widened

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

TOPICS = {
    "volcano.md": ("Volcanoes", "Magma rises through the crust and erupts as lava and ash."),
    "tides.md": ("Ocean tides", "The moon's gravity pulls the sea, raising two tidal bulges."),
    "bread.md": ("Baking bread", "Yeast ferments the dough, and the oven sets its crumb."),
    "chess.md": ("Chess openings", "The Sicilian defence answers e4 with the c5 pawn move."),
    "bees.md": ("Honey bees", "Worker bees forage nectar and dance to show where flowers are."),
    "rust.md": ("Rust on iron", "Iron oxidises in damp air, and the red oxide flakes away."),
    "comets.md": ("Comets", "An icy nucleus near the sun grows a coma and a long tail."),
    "cheese.md": ("Making cheese", "Rennet curdles milk; the curds are pressed and aged."),
    "sleep.md": ("Sleep cycles", "The brain passes through REM and deep slow-wave stages."),
    "glaciers.md": ("Glaciers", "Compacted snow becomes ice that flows and carves valleys."),
    "vaccines.md": ("Vaccines", "An antigen trains the immune system to make antibodies."),
    "bridges.md": ("Suspension bridges", "Steel cables hang from towers and carry the deck."),
}
QUESTIONS = {
    "volcano.md": "what comes out when a mountain explodes",
    "tides.md": "why does the sea level go up and down each day",
    "bread.md": "how does a loaf rise before it goes in the stove",
    "chess.md": "a good response to the king's pawn opening",
    "bees.md": "how do insects tell each other where the blossoms are",
    "rust.md": "why does metal turn orange when left outside",
    "comets.md": "what makes the glowing trail of a space snowball",
    "cheese.md": "turning dairy into a hard aged food",
    "sleep.md": "what stages does the mind go through at night",
    "glaciers.md": "how do rivers of frozen water shape the land",
    "vaccines.md": "how do shots protect people from disease",
    "bridges.md": "how is a long road over a river held up by wires",
}


def _write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (title, text) in TOPICS.items():
        (folder / name).write_text(f"# {title}\n\n{text}\n")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {"wide": str(widened(root / "wide")), "weak": str(weakened(root / "weak"))}


@pytest.fixture
def indexed(tmp_path: Path, embedder) -> Iterator[tuple[Settings, Path]]:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    _write_corpus(corpus)
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        "".join(json.dumps({"query": q, "relevant": [n]}) + "\n" for n, q in QUESTIONS.items())
    )
    # Ingested with the torch `embedder` fixture: settings that say so, so that a re-embed to
    # the same model finds its vectors in the cache.
    settings = Settings(
        data_dir=tmp_path / "data", golden_set=golden, gate_mode="dense", embedding_backend="torch"
    )
    report = ingest_folder(
        settings, corpus, embedder, cache=Components(settings).embedding_cache(embedder)
    )
    assert len(report.new) == len(TOPICS)
    yield settings, corpus


def _point_ids(settings: Settings, collection: str) -> set[str]:
    store = Components(settings).store()
    try:
        return {point_id for point_id, _ in store.scroll(collection, [])}
    finally:
        store.close()


def test_reembed_to_another_dimension_and_back_switches_through_the_gate(
    indexed: tuple[Settings, Path], models: dict[str, str]
) -> None:
    settings, _ = indexed
    before = _point_ids(settings, "docs__v1")

    wide = run_reembed(settings, models["wide"])
    assert wide.outcome == "switched" and wide.built == "docs__v2" and wide.dimension == 768
    assert wide.gate is not None and wide.gate["passed"] and wide.gate["queries"] == 12
    assert wide.gate["new"] == pytest.approx(wide.gate["old"], abs=1e-6)  # same geometry
    assert wide.embedded == len(before) and wide.from_cache == 0
    assert _point_ids(settings, "docs__v2") == before

    back = run_reembed(settings, "sentence-transformers/all-MiniLM-L6-v2")
    assert back.outcome == "switched" and back.built == "docs__v3" and back.dimension == 384
    assert back.embedded == 0 and back.from_cache == len(before), "the cache had every vector"
    assert back.dropped == ["docs__v1"], "retention keeps the serving version and one more"

    store = Components(settings).store()
    try:
        spec = active_spec(store, "docs")
        assert spec is not None and spec.name == "docs__v3" and spec.dimension == 384
    finally:
        store.close()
    manifest = Manifest(settings.manifest_path())
    try:
        states = {name: record.state for name, record in manifest.versions().items()}
        scores = manifest.versions()["docs__v3"].scores
    finally:
        manifest.close()
    assert states == {"docs__v1": "dropped", "docs__v2": "retired", "docs__v3": "serving"}
    assert set(scores) == {"dense"} and 0 < scores["dense"]["ndcg@10"] <= 1

    rolled = run_rollback(settings)
    assert (rolled.previous, rolled.serving, rolled.points) == ("docs__v3", "docs__v2", len(before))
    assert rolled.caught_up == {"points": 0, "stale_versions": 0, "embedded": 0}


def test_gate_rejects_a_weakened_model_and_the_old_version_keeps_serving(
    indexed: tuple[Settings, Path], models: dict[str, str]
) -> None:
    settings, _ = indexed
    report = run_reembed(settings, models["weak"])
    assert report.outcome == "rejected"
    assert report.gate is not None and not report.gate["passed"]
    assert report.gate["new"] < report.gate["old"] - 0.2, report.gate
    assert set(report.scores) == {"docs__v1", "docs__v2"}
    store = Components(settings).store()
    try:
        assert store.resolve_alias("docs") == "docs__v1"
        assert store.list_collections() == ["docs__v1"], "the rejected build is dropped"
    finally:
        store.close()

    forced = run_reembed(settings, models["weak"], force=True)
    assert forced.outcome == "switched" and forced.embedded == 0, "its vectors were cached"


def test_a_switch_needs_a_golden_set_or_force(
    indexed: tuple[Settings, Path], models: dict[str, str]
) -> None:
    settings, _ = indexed
    bare = settings.model_copy(update={"golden_set": None})
    with pytest.raises(GateUnavailable, match="golden set"):
        run_reembed(bare, models["wide"])
    assert run_reembed(bare, models["wide"], force=True).gate is None


def test_ingest_during_a_reembed_lands_in_the_new_version(
    indexed: tuple[Settings, Path], models: dict[str, str], embedder
) -> None:  # type: ignore[no-untyped-def]
    """An ingest run (one document edited, one deleted, one added) between the build and the
    switch: the catch-up under the run lock makes the new version equal a clean ingest."""
    from pipelines.progress import set_progress_listener

    settings, corpus = indexed
    store = Components(settings).store()
    ingested: list[object] = []

    def ingest_meanwhile(stage: str, done: int, total: int) -> None:
        if stage == "re-embed" and not ingested:
            (corpus / "tides.md").write_text("# Ocean tides\n\nSpring tides follow full moons.\n")
            (corpus / "cheese.md").unlink()
            (corpus / "kites.md").write_text("# Kites\n\nWind lifts a kite on its line.\n")
            ingested.append(ingest_folder(settings, corpus, embedder, store=store))

    set_progress_listener(ingest_meanwhile)
    try:
        report = run_reembed(settings, models["wide"], store=store)
    finally:
        set_progress_listener(None)
        store.close()
    assert ingested, "the ingest ran during the re-embed"
    assert report.outcome == "switched"
    assert report.caught_up["points"] >= 2 and report.caught_up["stale_versions"] == 2
    assert _point_ids(settings, "docs__v2") == _point_ids(settings, "docs__v1")

    store = Components(settings).store()
    try:
        uris = {p["uri"].rsplit("/", 1)[-1] for _, p in store.scroll("docs__v2", ["uri"])}
        texts = " ".join(p["text"] for _, p in store.scroll("docs__v2", ["text"]))
    finally:
        store.close()
    assert "kites.md" in uris and "cheese.md" not in uris
    assert "Spring tides" in texts and "two tidal bulges" not in texts


def test_prefixes_are_recorded_and_used_for_passages_and_queries(
    indexed: tuple[Settings, Path], embedder
) -> None:  # type: ignore[no-untyped-def]
    settings, _ = indexed
    model = "sentence-transformers/all-MiniLM-L6-v2"
    prefixed = Settings(
        data_dir=settings.data_dir,
        embedding_prompts={model: EmbeddingPrompts(query="query: ", passage="passage: ")},
        embedding_backend="torch",  # compared with the torch `embedder` fixture below
    )
    report = run_reembed(prefixed, model, force=True)
    assert report.outcome == "switched" and report.embedded > 0, (
        "prefixed texts are new to the cache"
    )
    store = Components(settings).store()
    try:
        spec = active_spec(store, "docs")
        assert spec is not None and (spec.query_prefix, spec.passage_prefix) == (
            "query: ",
            "passage: ",
        )
        query = Components(settings).embedder_for(spec).embed_query("volcano")
        expected = embedder.model.encode("query: volcano", normalize_embeddings=True)
        assert np.allclose(query, expected, atol=1e-5)

        _, payload = next(iter(store.scroll(spec.name, ["context", "text"])))
        from chunking.types import indexed_text
        from index.contracts import SearchRequest

        passage = embedder.model.encode(
            "passage: " + indexed_text(payload["context"], payload["text"]),
            normalize_embeddings=True,
        )
        hit = store.search(spec.name, SearchRequest("dense", 1, 1, dense=passage)).hits[0]
        assert hit.score == pytest.approx(1.0, abs=1e-4)
    finally:
        store.close()


def test_a_backend_change_is_a_reembed_through_the_gate(indexed: tuple[Settings, Path]) -> None:
    """The collection keeps the backend that made it: ingests and queries use it whatever the
    settings say, until a re-embed builds a version on the configured one."""
    settings, _ = indexed
    int8 = Settings(
        data_dir=settings.data_dir,
        golden_set=settings.golden_set,
        gate_mode="dense",
        embedding_backend="openvino",
        embedding_quantization="int8",
        model_exports_dir=None,  # the default place, in the data dir
    )
    parts = Components(int8)
    store = parts.store()
    try:
        assert parts.index_embedder(store).backend.label == "torch"  # not yet re-embedded
    finally:
        store.close()

    report = run_reembed(int8, EMBEDDING_MODEL)
    assert report.outcome == "switched" and report.built == "docs__v2"
    assert report.embedded == len(_point_ids(settings, "docs__v1")), "int8 vectors are new"
    assert report.gate is not None and report.gate["new"] >= report.gate["old"] - 0.05
    store = parts.store()
    try:
        spec = active_spec(store, "docs")
        assert spec is not None and spec.embedding_backend == "openvino-int8"
        assert parts.index_embedder(store).backend.label == "openvino-int8"
        # Queries of a torch-configured process still embed the way the collection was made.
        assert Components(settings).embedder_for(spec).backend.label == "openvino-int8"
    finally:
        store.close()
    assert any((settings.data_dir / "model-exports").iterdir()), "exported into the data dir"


def _wait_for(condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_running_api_follows_the_switch_with_no_failed_request(
    indexed: tuple[Settings, Path], models: dict[str, str]
) -> None:
    """uvicorn on loopback answers /retrieve in a loop from another thread while the index is
    re-embedded and switched in this process (the embedded engine's shards belong to one
    process; against a Qdrant server the re-embed runs anywhere)."""
    import uvicorn

    from retrieval_api.app import create_app

    settings, _ = indexed
    store = Components(settings).store()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, store=store), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def query_in_a_loop() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    "/retrieve", json={"query": "why do tides happen", "mode": "dense", "top_k": 3}
                )
                index = response.json().get("index") if response.status_code == 200 else None
                answers.append((response.status_code, index and index["embedding_model"]))

    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        client_thread = threading.Thread(target=query_in_a_loop)
        client_thread.start()
        _wait_for(lambda: len(answers) >= 5)
        report = run_reembed(settings, models["wide"], store=store)
        settled = len(answers)
        _wait_for(lambda: len(answers) >= settled + 5)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=30)
        stop.set()
        client_thread.join(timeout=30)
    finally:
        stop.set()
        server.should_exit = True
        serving.join(timeout=30)
        store.close()
    assert report.outcome == "switched" and ready.status_code == 200, ready.text
    failures = [a for a in answers if a[0] != 200]
    assert not failures, failures
    models_seen = [model for _, model in answers]
    assert models_seen[0] == "sentence-transformers/all-MiniLM-L6-v2"
    assert models_seen[-1] == models["wide"]
    switched_at = models_seen.index(models["wide"])
    assert all(m == models["wide"] for m in models_seen[switched_at:]), "no flapping back"


def test_cli_reembed_versions_and_rollback(
    indexed: tuple[Settings, Path],
    models: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: None,
) -> None:
    from typer.testing import CliRunner

    from sluice.cli.main import app

    settings, _ = indexed
    monkeypatch.setenv("SLUICE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SLUICE_GOLDEN_SET", str(settings.golden_set))
    monkeypatch.setenv("SLUICE_GATE_MODE", "dense")
    runner = CliRunner()

    switched = runner.invoke(app, ["reembed", "--model", models["wide"], "--json"])
    assert switched.exit_code == 0, switched.output
    assert json.loads(switched.stdout)["outcome"] == "switched"

    rejected = runner.invoke(app, ["reembed", "--model", models["weak"]])
    assert rejected.exit_code == 3, rejected.output
    assert "rejected" in rejected.stdout and "Gate: ndcg@10 in dense mode" in rejected.stdout

    listed = runner.invoke(app, ["versions", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["collection"]: row for row in json.loads(listed.stdout)["versions"]}
    assert set(rows) == {"docs__v1", "docs__v2"}
    assert rows["docs__v2"]["serving"] and rows["docs__v2"]["dimension"] == 768
    assert rows["docs__v1"]["state"] == "retired" and rows["docs__v1"]["dimension"] == 384
    assert "ndcg@10" in rows["docs__v2"]["scores"]["dense"]

    rolled = runner.invoke(app, ["rollback", "--json"])
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["serving"] == "docs__v1"
    nowhere = runner.invoke(app, ["rollback", "--to", "9"])
    assert nowhere.exit_code == 2 and "no version to roll back to" in nowhere.output

    missing = runner.invoke(app, ["reembed", "--model", str(settings.data_dir / "no-such-model")])
    assert missing.exit_code == 2 and "re-embed failed" in missing.output, missing.output


def test_an_interrupted_reembed_is_resumed_not_restarted(
    indexed: tuple[Settings, Path], models: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.write.version_sync
    from pipelines.progress import set_progress_listener

    settings, _ = indexed
    monkeypatch.setattr(index.write.version_sync, "PAGE_SIZE", 5)

    def crash(stage: str, done: int, total: int) -> None:
        raise KeyboardInterrupt("killed after the first page")

    set_progress_listener(crash)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_reembed(settings, models["wide"])
    finally:
        set_progress_listener(None)
    store = Components(settings).store()
    try:
        assert store.list_collections() == ["docs__v1", "docs__v2"]
        assert store.resolve_alias("docs") == "docs__v1", "a half-built version never serves"
        assert store.count("docs__v2") == 5
    finally:
        store.close()

    resumed = run_reembed(settings, models["wide"])
    assert resumed.resumed and resumed.built == "docs__v2" and resumed.outcome == "switched"
    assert (resumed.embedded, resumed.from_cache) == (len(TOPICS) - 5, 0), "only the rest"
    assert resumed.points == len(TOPICS)


def test_rollback_catches_the_older_version_up_with_its_own_model(
    indexed: tuple[Settings, Path], models: dict[str, str]
) -> None:
    settings, corpus = indexed
    assert run_reembed(settings, models["wide"]).outcome == "switched"
    store = Components(settings).store()
    try:
        spec = active_spec(store, "docs")
        assert spec is not None and spec.dimension == 768
        wide = Components(settings).embedder_for(spec)
        (corpus / "bees.md").unlink()
        (corpus / "owls.md").write_text("# Owls\n\nOwls hunt mice at night by sound.\n")
        report = ingest_folder(settings, corpus, wide, store=store)
        assert (len(report.new), len(report.deleted)) == (1, 1)
    finally:
        store.close()

    rolled = run_rollback(settings)
    assert (rolled.serving, rolled.embedding_model) == ("docs__v1", EMBEDDING_MODEL)
    assert rolled.caught_up == {"points": 1, "stale_versions": 1, "embedded": 1}
    assert _point_ids(settings, "docs__v1") == _point_ids(settings, "docs__v2")
    with pytest.raises(ValueError, match="no version to roll back to"):
        run_rollback(settings, to=3)


def test_prefixes_come_from_the_model_or_its_family(tmp_path: Path) -> None:
    import shutil

    from index.models.catalog import resolve_model_path
    from index.models.embedder import SentenceTransformerEmbedder

    packaged = Path(resolve_model_path(EMBEDDING_MODEL))
    family = shutil.copytree(packaged, tmp_path / "e5-small-copy")
    declared = shutil.copytree(packaged, tmp_path / "declares-prompts")
    config = declared / "config_sentence_transformers.json"
    settings_json = json.loads(config.read_text())
    settings_json["prompts"] = {"query": "Represent this question: ", "document": ""}
    config.write_text(json.dumps(settings_json))

    plain = SentenceTransformerEmbedder(EMBEDDING_MODEL, device="cpu")
    e5 = SentenceTransformerEmbedder(str(family), device="cpu")
    own = SentenceTransformerEmbedder(str(declared), device="cpu")
    assert (plain.query_prefix, plain.passage_prefix) == ("", "")
    assert (e5.query_prefix, e5.passage_prefix) == ("query: ", "passage: ")
    assert (own.query_prefix, own.passage_prefix) == ("Represent this question: ", "")
    # Read from the model's saved settings, without loading it; the loaded model agrees.
    assert (plain._model, e5._model, own._model) == (None, None, None)
    own.warm_up()
    assert own._declared_prompts() == {"query": "Represent this question: "}
    assert own.model.prompts == {"query": "Represent this question: ", "document": ""}
    assert e5.cache_key != plain.cache_key and "passage: " in e5.cache_key
    assert e5.max_tokens == plain.max_tokens - plain.count_tokens(["passage: "])[0]
