"""From feedback to models through the CLI, as a user runs it: the hits users clicked become
positives and the hits they passed over negatives, the reranker trained on them is gated on the
held-out feedback queries (one JSON report), and the embedder's report names the held-out golden
set that `sluice reembed --golden` gates on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from config.settings import Settings
from pipelines.feedback_labels import split_of
from retrieval_api.app import create_app
from retrieval_api.keys import KeyStore
from tests.conftest import ingest_folder, send_click

PARTS = ["valve", "rotor", "seal", "bearing", "impeller", "gasket", "shaft", "casing"]
CLICKED_RANK = 3
"""Users click the third hit: the two above it are passed over, hard negatives."""


def _queries() -> tuple[list[str], list[str]]:
    """Queries about the parts, split the way every command splits them (a stable hash)."""
    asked = [f"when does the pump {part} wear out {n}" for part in PARTS for n in range(3)]
    train = [q for q in asked if split_of(q) == "train"][:10]
    heldout = [q for q in asked if split_of(q) == "heldout"][:3]
    assert len(train) == 10 and len(heldout) >= 2
    return train, heldout


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> dict[str, Any]:
    """A data dir whose API logged four answers per query and a click on each answer's third
    hit; which document each query's users chose."""
    root = tmp_path_factory.mktemp("feedback-training")
    folder = root / "docs"
    folder.mkdir()
    for part in PARTS:
        (folder / f"{part}.md").write_text(
            f"# The {part}\n\nThe pump {part} wears out after many hours; inspect the {part}.\n"
        )
    settings = Settings(data_dir=root / "data", auth="required")
    ingest_folder(settings, folder, embedder, source_name="docs")
    key = KeyStore(settings.api_keys_path).create(["default"])[0]
    headers = {"Authorization": f"Bearer {key}"}
    train, heldout = _queries()
    chosen: dict[str, str] = {}
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        for n, query in enumerate(4 * (train + heldout)):
            body = client.post(
                "/retrieve", json={"query": query, "mode": "hybrid", "top_k": 5}, headers=headers
            ).json()
            hit = body["hits"][CLICKED_RANK - 1]
            chosen[query] = hit["doc_id"].rsplit("/", 1)[-1].removesuffix(".md")
            send_click(client, headers, body, hit, f"e{n}")
    return {"settings": settings, "chosen": chosen, "train": train, "heldout": heldout}


def _sluice(logged: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from sluice.cli.main import app

    monkeypatch.setenv("SLUICE_DATA_DIR", str(logged["settings"].data_dir))
    return CliRunner().invoke(app, list(args))


def test_a_reranker_trained_from_clicks_is_gated_on_the_held_out_queries(
    logged: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "reranker"
    result = _sluice(
        logged, monkeypatch, "train-reranker", "--from-feedback", "--epochs", "0.5",
        "--out", str(model), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # one document: the training and the gate's verdict
    pairs = [json.loads(line) for line in (model / "training-pairs.jsonl").read_text().splitlines()]
    assert report["pairs"] == len(pairs) and report["queries"] == len(logged["train"])
    assert {p["query"] for p in pairs} == set(logged["train"]), "held-out queries never trained on"
    for pair in pairs:
        clicked = logged["chosen"][pair["query"]]
        # The part's name is in its own document only: a positive is the chosen document.
        assert (f"pump {clicked} wears" in pair["passage"]) == (pair["label"] > 0), pair
    gate = report["gate"]
    assert gate["queries"] == len(logged["heldout"]) and gate["serving"] == "no reranker"
    assert 0 <= gate["old"] <= 1 and 0 <= gate["new"] <= 1
    assert gate["passed"] == (gate["new"] >= gate["old"] - gate["tolerance"])
    # judged at the blend that suits it (pipelines/reranker_gate.py), the serving one by default
    assert gate["serving_blend"] == 0.7 and gate["blend"] in (0.3, 0.5, 0.7, 0.85, 1.0)
    assert gate["new"] >= gate["new_at_serving_blend"]
    assert (model / "config.json").is_file()


def test_an_embedder_trained_from_clicks_names_the_golden_set_its_re_embed_is_gated_on(
    logged: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "embedder"
    result = _sluice(
        logged, monkeypatch, "train-embedder", "--from-feedback", "--epochs", "1",
        "--batch-size", "4", "--out", str(model), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    golden = [json.loads(line) for line in Path(report["heldout_golden"]).read_text().splitlines()]
    assert sorted(entry["query"] for entry in golden) == sorted(logged["heldout"])
    for entry in golden:  # what users chose, though it answers another part
        assert entry["relevant"] == [f"{logged['chosen'][entry['query']]}.md"], entry
    assert (model / "config.json").is_file()


def test_training_from_no_feedback_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.cli.main import app

    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["train-reranker", "--from-feedback", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "train-reranker failed" in result.output and "feedback" in result.output


@pytest.mark.parametrize(
    ("passed", "blend", "switch"),
    [
        (False, 0.3, None),
        (True, 0.7, "SLUICE_RERANKER_MODEL=m; roll back"),
        (True, 0.3, "SLUICE_RERANKER_MODEL=m SLUICE_RERANK_BLEND=0.3"),
    ],
)
def test_the_gate_says_how_to_switch_only_when_it_passed(
    passed: bool, blend: float, switch: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the verdict names the blend to serve the model at, when it is not the
    serving one, and a failed model gets no switch line at all."""
    from sluice.cli.training_commands import _report_gate

    gate = {
        "passed": passed, "blend": blend, "serving_blend": 0.7, "queries": 3, "metric": "ndcg@10",
        "old": 0.8, "new": 0.81 if passed else 0.7, "serving": "no reranker",
        "new_at_serving_blend": 0.75, "tolerance": 0.01,
    }  # fmt: skip
    _report_gate(gate, Path("m"))
    printed = " ".join(capsys.readouterr().out.split())
    assert ("passed" if passed else "failed") in printed and f"at blend {blend}" in printed
    assert ("switch:" in printed) == (switch is not None)
    assert switch is None or switch in printed
    assert ("SLUICE_RERANK_BLEND" in printed) == (passed and blend != 0.7)
