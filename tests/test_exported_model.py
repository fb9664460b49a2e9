"""A model run from its export without torch (`index.models.exported_model`): the same tokens,
limits, prompts and vectors as sentence-transformers on the same export, for every plain model
it takes, and sentence-transformers for every model it does not."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import index.models.embedder as embedder_module
from index.contracts import InferenceBackend
from index.models.catalog import resolve_model_path
from index.models.embedder import SentenceTransformerEmbedder
from index.models.exported_model import (
    TOKENIZER_FILE,
    TOKENIZER_SETTINGS_FILE,
    ExportedSentenceModel,
    load_exported_model,
    plain_layout,
)
from index.models.exports import export_id, file_name
from tests.conftest import adopt_env, default_backend_env

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "Centrifugal pumps move fluid by converting rotational energy into kinetic energy.",
    "",
    "  spaces around  ",
    "Café naïve résumé, Straße and ÅNGSTRÖM",
    "中文字符 mixed with 日本語 and emoji 🙂",
    "tabs\tand\nnew lines",
    "bearing " * 400,  # past the model's 256 tokens: cut as sentence-transformers cuts
    "x" * 3000,
]


def _embedders(
    model: str, backend: InferenceBackend, exports: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[SentenceTransformerEmbedder, SentenceTransformerEmbedder]:
    """(through sentence-transformers, from the export alone), the first making the export."""
    through = SentenceTransformerEmbedder(model, "cpu", backend=backend, exports_dir=exports)
    with monkeypatch.context() as patch:
        patch.setattr(embedder_module, "load_exported_model", lambda *args: None)
        through.warm_up()
    lean = SentenceTransformerEmbedder(model, "cpu", backend=backend, exports_dir=exports)
    lean.warm_up()
    assert isinstance(lean.model, ExportedSentenceModel)
    assert not isinstance(through.model, ExportedSentenceModel)
    return through, lean


def _assert_alike(through: SentenceTransformerEmbedder, lean: SentenceTransformerEmbedder) -> None:
    assert lean.dimension == through.dimension
    assert lean.max_tokens == through.max_tokens
    assert (lean.query_prefix, lean.passage_prefix) == (
        through.query_prefix,
        through.passage_prefix,
    )
    assert lean.count_tokens(TEXTS) == through.count_tokens(TEXTS)
    assert [lean.token_spans(t) for t in TEXTS] == [through.token_spans(t) for t in TEXTS]
    for batch_tokens in (None, 2048):  # batches of `batch_size` texts, and token-bounded ones
        lean.batch_tokens = through.batch_tokens = batch_tokens
        expected = through.embed_documents(TEXTS)
        assert np.abs(lean.embed_documents(TEXTS) - expected).max() < 1e-6
    expected = np.stack([through.embed_query(t) for t in TEXTS[:3]])
    assert np.abs(np.stack([lean.embed_query(t) for t in TEXTS[:3]]) - expected).max() < 1e-6


@pytest.mark.parametrize("label", ["openvino-int8", "onnx-int8"])
def test_the_export_alone_embeds_as_sentence_transformers_does(
    label: str, model_exports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    through, lean = _embedders(
        MINILM, InferenceBackend.from_label(label), model_exports, monkeypatch
    )
    _assert_alike(through, lean)


def _copy(model: str, to: Path) -> Path:
    shutil.copytree(resolve_model_path(model), to)
    return to


def test_a_cls_model_with_prompts_saved_by_todays_sentence_transformers_runs_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings files sentence-transformers writes now (a pooling mode by name, no
    sequence limit beside the transformer), CLS pooling and prompts (e5-style) are read as it
    reads them."""
    from sentence_transformers import SentenceTransformer

    saved = tmp_path / "retrained"
    model = SentenceTransformer(resolve_model_path(MINILM), device="cpu")
    model.prompts = {"query": "query: ", "document": "passage: "}
    model[1].pooling_mode = "cls"  # type: ignore[assignment]
    model.save(str(saved))
    # A cased tokenizer by its settings, over a `tokenizer.json` that lower-cases: transformers
    # rebuilds the normaliser from the settings, and so must this path.
    _edit(saved, "tokenizer_config.json", {"do_lower_case": False})
    pooling = json.loads((saved / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "cls"
    through, lean = _embedders(
        str(saved), InferenceBackend.from_label("openvino-int8"), tmp_path / "exports", monkeypatch
    )
    assert (lean.query_prefix, lean.passage_prefix) == ("query: ", "passage: ")
    _assert_alike(through, lean)


def _edit(folder: Path, name: str, change: dict[str, object]) -> None:
    settings = json.loads((folder / name).read_text())
    settings.update(change)
    (folder / name).write_text(json.dumps(settings))


DENSE = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
NOT_PLAIN = {
    "lower-cased by sentence-transformers": lambda f: _edit(
        f, "sentence_bert_config.json", {"do_lower_case": True}
    ),
    "max pooling": lambda f: _edit(
        f,
        "1_Pooling/config.json",
        {"pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True},
    ),
    "two poolings at once": lambda f: _edit(
        f, "1_Pooling/config.json", {"pooling_mode_cls_token": True}
    ),
    "prompt left out of the pooling": lambda f: _edit(
        f, "1_Pooling/config.json", {"include_prompt": False}
    ),
    "a setting it does not know": lambda f: _edit(f, "sentence_bert_config.json", {"new": 1}),
    "a Dense layer": lambda f: (f / "modules.json").write_text(
        json.dumps([*json.loads((f / "modules.json").read_text()), DENSE])
    ),
    "vectors cut to fewer dimensions": lambda f: _edit(
        f, "config_sentence_transformers.json", {"truncate_dim": 128}
    ),
    "a default prompt": lambda f: _edit(
        f, "config_sentence_transformers.json", {"default_prompt_name": "query"}
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_a_model_it_does_not_reproduce_whole_loads_through_sentence_transformers(
    case: str, tmp_path: Path
) -> None:
    folder = _copy(MINILM, tmp_path / "model")
    assert plain_layout(folder) == ("mean", True)
    NOT_PLAIN[case](folder)
    assert plain_layout(folder) is None


def test_without_its_export_its_tokenizer_or_on_torch_it_loads_through_sentence_transformers(
    tmp_path: Path, model_exports: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = Path(resolve_model_path(MINILM))
    int8, torch = InferenceBackend.from_label("openvino-int8"), InferenceBackend("torch")
    assert load_exported_model(folder, MINILM, int8, tmp_path) is None  # not exported yet
    made = tmp_path / export_id(MINILM, int8)
    made.mkdir()
    (made / file_name(int8)).write_text("not a model")
    assert load_exported_model(folder, MINILM, int8, tmp_path) is None  # no tokenizer beside it
    SentenceTransformerEmbedder(MINILM, "cpu", backend=int8, exports_dir=model_exports).warm_up()
    for name in (TOKENIZER_FILE, TOKENIZER_SETTINGS_FILE):
        shutil.copy(model_exports / export_id(MINILM, int8) / name, made / name)
    with caplog.at_level(logging.WARNING):
        assert load_exported_model(folder, MINILM, int8, tmp_path) is None  # a damaged export
    assert "not run from its export" in caplog.text
    placed = tmp_path / export_id(MINILM, torch) / file_name(torch)
    placed.parent.mkdir()
    placed.write_text("stands in for an export")
    assert load_exported_model(folder, MINILM, torch, tmp_path) is None  # torch runs its weights


def test_exported_by_the_cli_a_process_embeds_without_importing_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sluice models --export` (what an image build runs) makes the export; a process that
    then embeds on the default backend never imports torch, transformers or
    sentence-transformers (bench/model_load_paths.py: what that saves)."""
    from typer.testing import CliRunner

    from sluice.cli.main import app

    adopt_env(
        monkeypatch,
        default_backend_env(os.environ)
        | {
            "SLUICE_DATA_DIR": str(tmp_path / "data"),
            "SLUICE_MODEL_EXPORTS_DIR": str(tmp_path / "x"),
        },
    )
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    runner = CliRunner()
    exported = runner.invoke(app, ["models", "--export", "--json"])
    assert exported.exit_code == 0, exported.output
    report = json.loads(exported.stdout)
    assert report["models"] == [{"model": MINILM, "backend": "openvino-int8"}]
    assert report["exports_dir"] == str(tmp_path / "x") and report["megabytes"] > 10
    again = runner.invoke(app, ["models", "--export"], terminal_width=200)  # made once, reused
    assert again.exit_code == 0 and f"({report['megabytes']:.0f} MB)" in again.stdout
    assert MINILM in again.stdout and "openvino-int8" in again.stdout
    listed = runner.invoke(app, ["models"], terminal_width=200)
    assert listed.exit_code == 0 and "all-MiniLM-L6-v2" in listed.stdout, listed.output
    code = (
        "import sys\n"
        "from config.settings import Settings\n"
        "from composition.components import Components\n"
        "embedder = Components(Settings()).embedder()\n"
        "assert embedder.embed_documents(['a pump', 'a gasket']).shape == (2, 384)\n"
        "heavy = sorted({'torch', 'transformers', 'sentence_transformers'} & set(sys.modules))\n"
        "print(type(embedder.model).__name__, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ExportedSentenceModel", "[]"]
