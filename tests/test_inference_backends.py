"""The onnx and openvino backends: exported offline on first use, kept by the model's files,
close to torch's vectors and scores, and recorded in the collection they build."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from index.contracts import InferenceBackend, ScoredPoint
from index.models.embedder import SentenceTransformerEmbedder
from index.models.exports import export_id
from index.models.reranker import CrossEncoderReranker

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "Centrifugal pumps move fluid by converting rotational energy into kinetic energy.",
    "The gasket between the two flanges failed under pressure and leaked.",
    "Quarterly revenue grew by eight percent on strong demand in Europe.",
    "A heat exchanger transfers heat between two fluids without mixing them.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Bearings wear faster when the shaft is misaligned or poorly lubricated.",
]
LABELS = ["onnx", "onnx-int8", "openvino", "openvino-int8"]
# fp32 exports match torch to float rounding; int8 keeps the direction of every vector (measured
# minimum cosine over SciFact passages: 0.991 onnx-int8, 0.999 openvino-int8).
LEAST_COSINE = {"onnx": 0.9999, "openvino": 0.9999, "onnx-int8": 0.98, "openvino-int8": 0.99}


@pytest.fixture(scope="module")
def torch_vectors(embedder: SentenceTransformerEmbedder) -> np.ndarray:
    return embedder.embed_documents(TEXTS)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-exports")


@pytest.mark.parametrize("label", LABELS)
def test_backend_vectors_match_torch_and_the_export_is_made_once(
    label: str,
    exports: Path,
    torch_vectors: np.ndarray,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = InferenceBackend.from_label(label)
    embedder = SentenceTransformerEmbedder(MINILM, "cpu", backend=backend, exports_dir=exports)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedder.warm_up()  # exports: quietly, since the CLI promises one line on stderr
    assert not [w for w in caught if "onnx" in w.filename or "Tracer" in w.category.__name__]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    vectors = embedder.embed_documents(TEXTS)
    assert capfd.readouterr().out == "", "exports write nothing on stdout (`--json` goes there)"
    assert vectors.shape == torch_vectors.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= LEAST_COSINE[label], cosines
    query = embedder.embed_query("why do pumps leak")
    assert int(np.argmax(vectors @ query)) in (0, 1)  # the pump or the gasket

    folder = exports / export_id(embedder.model_id, backend)
    made = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    again = SentenceTransformerEmbedder(MINILM, "cpu", backend=backend, exports_dir=exports)
    # A process that finds the export runs it without torch (tests/test_exported_model.py).
    assert np.abs(again.embed_documents(TEXTS) - vectors).max() < 1e-6
    assert {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == made  # not re-exported
    assert not [p for p in exports.iterdir() if p.name.startswith(".")]  # no work left behind


def test_each_backend_keys_its_own_embedding_cache(
    embedder: SentenceTransformerEmbedder, exports: Path
) -> None:
    keys = {embedder.cache_key}
    for label in LABELS:
        backend = InferenceBackend.from_label(label)
        other = SentenceTransformerEmbedder(MINILM, backend=backend, exports_dir=exports)
        keys.add(other.cache_key)
    assert len(keys) == 1 + len(LABELS)
    assert "#" not in embedder.cache_key  # torch's key is unchanged: existing caches stay valid


def test_a_retrained_model_gets_a_new_export(tmp_path: Path) -> None:
    from index.models.catalog import resolve_model_path

    model = tmp_path / "model"
    model.mkdir()
    for f in Path(resolve_model_path(MINILM)).iterdir():
        if f.is_file():
            (model / f.name).write_bytes(f.read_bytes())
    backend = InferenceBackend("onnx")
    before = export_id(str(model), backend)
    assert export_id(str(model), backend) == before
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")
    assert export_id(str(model), backend) != before
    assert export_id(str(model), InferenceBackend("openvino")) != export_id(str(model), backend)


def test_int8_without_an_exported_backend_and_a_gpu_backend_are_refused() -> None:
    with pytest.raises(ValueError, match="int8"):
        InferenceBackend("torch", "int8")
    embedder = SentenceTransformerEmbedder(
        MINILM, "cuda", backend=InferenceBackend("onnx"), exports_dir=Path("unused")
    )
    with pytest.raises(ValueError, match="runs on the CPU"):
        embedder.warm_up()


def test_settings_refuse_int8_on_torch_only_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import Settings

    monkeypatch.delenv("SLUICE_EMBEDDING_BACKEND", raising=False)
    monkeypatch.delenv("SLUICE_RERANK_BACKEND", raising=False)
    defaults = Settings()
    assert (defaults.embedding_backend, defaults.embedding_quantization) == ("auto", "int8")
    from index.models.device import choose_backend

    on_cpu = choose_backend(defaults.embedding_backend, defaults.embedding_quantization, "cpu")
    assert on_cpu.label == "openvino-int8"  # the measured default on a CPU
    assert choose_backend("auto", "int8", "cuda") == choose_backend("torch", "int8", "cpu")
    monkeypatch.setenv("SLUICE_RERANK_BACKEND", "torch")
    assert Settings().rerank_quantization == "none"  # the int8 default does not apply to torch
    monkeypatch.setenv("SLUICE_RERANK_QUANTIZATION", "int8")
    with pytest.raises(ValueError, match="SLUICE_RERANK_BACKEND=onnx"):
        Settings()


def _pairs_candidates() -> list[ScoredPoint]:
    return [ScoredPoint(f"p{i}", 0.0, {"text": text}) for i, text in enumerate(TEXTS)]


@pytest.mark.parametrize("head", ["segment", "classifier"])
@pytest.mark.parametrize("label", ["onnx-int8", "openvino"])
def test_reranker_heads_score_alike_on_every_backend(
    head: str, label: str, tmp_path: Path, exports: Path
) -> None:
    import torch

    from pipelines.reranker_training import new_cross_encoder

    saved = tmp_path / f"reranker-{head}"
    torch.manual_seed(0)  # the untrained head's weights: the same every run
    new_cross_encoder(MINILM, 128, head).save(str(saved))  # type: ignore[arg-type]
    query = "why do pumps leak"
    reference = CrossEncoderReranker(str(saved), device="cpu", budget_ms=60_000)
    fast = CrossEncoderReranker(
        str(saved),
        device="cpu",
        budget_ms=60_000,
        backend=InferenceBackend.from_label(label),
        exports_dir=exports,
    )
    expected = {r.point.id: r.rerank_score for r in reference.rerank(query, _pairs_candidates())}
    got = {r.point.id: r.rerank_score for r in fast.rerank(query, _pairs_candidates())}
    ids = sorted(expected)
    correlation = np.corrcoef([expected[i] for i in ids], [got[i] for i in ids])[0, 1]
    # fp32 matches to rounding; int8 of an untrained (random) classifier head, whose scores
    # barely vary, is the hardest case for quantisation noise.
    assert correlation > (0.9 if label.endswith("int8") else 0.999)
    if head == "segment":  # the untrained head already ranks like the bi-encoder
        assert max(got, key=got.__getitem__) == max(expected, key=expected.__getitem__)


def test_one_model_as_embedder_and_as_reranker_gets_an_export_each(
    exports: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """The packaged bi-encoder also loads as a cross-encoder (a classifier head on it): each
    must run its own export, or the reranker gets hidden states instead of one score a pair."""
    backend = InferenceBackend.from_label("openvino-int8")
    SentenceTransformerEmbedder(MINILM, "cpu", backend=backend, exports_dir=exports).warm_up()
    reranker = CrossEncoderReranker(
        MINILM, device="cpu", budget_ms=60_000, backend=backend, exports_dir=exports
    )
    assert len(reranker.rerank("why do pumps leak", _pairs_candidates())) == len(TEXTS)


def test_a_reranker_without_one_score_a_pair_is_reported_not_raised(tmp_path: Path) -> None:
    """A model answering something else than one score a pair is a skipped rerank, not a 500:
    here a bi-encoder's export put in the place of the cross-encoder's."""
    from index.contracts import RerankSkipped
    from index.models.exports import export_id

    backend = InferenceBackend.from_label("openvino")
    SentenceTransformerEmbedder(MINILM, "cpu", backend=backend, exports_dir=tmp_path).warm_up()
    (tmp_path / export_id(MINILM, backend)).rename(tmp_path / export_id(MINILM, backend, "logits"))
    reranker = CrossEncoderReranker(
        MINILM, device="cpu", budget_ms=60_000, backend=backend, exports_dir=tmp_path
    )
    with pytest.raises(RerankSkipped, match="reranker failed"):
        reranker.rerank("why do pumps leak", _pairs_candidates())


def test_openvino_runs_without_its_usage_analytics(tmp_path: Path) -> None:
    """openvino and nncf send usage events through `openvino_telemetry` wherever it imports;
    here one is installed that leaves a mark when imported, and must not be."""
    fake = tmp_path / "site" / "openvino_telemetry"
    fake.mkdir(parents=True)
    mark = tmp_path / "imported"
    (fake / "__init__.py").write_text(f"open({str(mark)!r}, 'w').close()\nclass Telemetry: ...\n")
    code = (
        "from index.models.exports import openvino_without_telemetry\n"
        "ov = openvino_without_telemetry(); import nncf, nncf.telemetry\n"
        "ov.Core()\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{root}"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert not mark.exists()


def test_a_gpu_is_looked_for_without_torch_where_no_driver_shows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`auto` on a Linux machine without a GPU driver picks the CPU without importing torch
    (1-2 s of CPU); where a driver shows, or torch is loaded already, torch is asked."""
    import torch  # noqa: F401  (loaded, as in a process that runs the torch backend)

    from index.models import device

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(device, "GPU_SIGNS", (str(tmp_path / "nvidia[0-9]*"),))
    assert device.could_have_gpu()  # torch is loaded: it is asked
    monkeypatch.delitem(sys.modules, "torch")  # as in a process that never imported it
    assert not device.could_have_gpu()
    assert device.pick_device("auto") == "cpu"
    assert "torch" not in sys.modules
    (tmp_path / "nvidia0").touch()
    assert device.could_have_gpu()
