"""Many requests at once get exactly the answers each gets alone: random queries from many
threads through a real `sluice serve` on each inference backend (the default one first), in
every mode, with and without the reranker, result and query-vector caches off."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import (
    DEFAULT_BACKENDS,
    default_backend_data_dir,
    default_backend_env,
    examples,
    sluice_serving,
)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TOPICS = {
    "pumps": "Centrifugal pumps move water by spinning an impeller; worn seals leak.",
    "valves": "Butterfly valves are inspected every quarter for leaks at the stem packing.",
    "boilers": "A boiler's blowdown drains sludge from the mud drum before it scales the tubes.",
    "keys": "Rotate API keys by creating a new one, handing it out, then revoking the old key.",
    "backups": "Nightly backups are copied off site and a restore is rehearsed every month.",
    "kernel": "The kernel loads a module on demand when a device that needs it appears.",
    "packages": "The package manager resolves dependencies and verifies signatures of archives.",
    "mail": "Outgoing mail is queued, signed with DKIM and retried when the relay is down.",
    "birds": "Mallards and teal are dabbling ducks; mergansers dive for fish.",
    "hockey": "The Stanley Cup is awarded to the champion of the playoffs each spring.",
    "sqlite": "SQLite keeps a whole database in one file and writes through a journal.",
    "regex": "A regular expression matches text by patterns of characters and repetitions.",
}
OFF_CORPUS = ["turbine", "password", "winter", "encryption", "zebra"]
IN_CORPUS = {w.strip(".,;'").lower() for text in TOPICS.values() for w in text.split()}
WORDS = [*sorted(IN_CORPUS), *OFF_CORPUS]
BACKENDS = [
    "default",
    pytest.param("onnx-int8", marks=pytest.mark.full),
    pytest.param("torch", marks=pytest.mark.full),
]
"""`default` sets nothing: what `sluice serve` runs unless told otherwise (OpenVINO int8 on a
CPU); the other backends in the full run."""


def _corpus(folder: Path) -> None:
    """Documents mixing two or three topics, so rankings have many close scores."""
    names = list(TOPICS)
    for n in range(36):
        parts = [names[n % 12], names[(n * 5 + 1) % 12], names[(n * 7 + 3) % 12]][: 2 + n % 2]
        body = "\n\n".join(f"## {p.title()}\n\n{TOPICS[p]}" for p in parts)
        (folder / f"doc{n:02d}.md").write_text(f"# Note {n}: {' and '.join(parts)}\n\n{body}\n")


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_exports: Path
) -> Iterator[str]:
    from composition.components import Components
    from config.settings import Settings
    from flows.ingest_flow import run_sync

    label: str = request.param
    root = tmp_path_factory.mktemp(f"concurrent-{label}")
    (root / "docs").mkdir()
    _corpus(root / "docs")
    data_dir = default_backend_data_dir(root / "data", model_exports)
    backends: dict[str, Any] = dict(DEFAULT_BACKENDS)
    if label != "default":
        backend, _, quantization = label.partition("-")
        for stage in ("embedding", "rerank"):
            backends |= {f"{stage}_backend": backend, f"{stage}_quantization": quantization}
    env = default_backend_env(os.environ)
    env |= {f"SLUICE_{name.upper()}": value for name, value in backends.items() if value}
    env |= {
        "SLUICE_DATA_DIR": str(data_dir),
        "SLUICE_RESULT_CACHE_ENTRIES": "0",
        "SLUICE_QUERY_EMBEDDING_CACHE_ENTRIES": "0",
        "SLUICE_RERANKER_MODEL": MINILM,
        "SLUICE_RERANK_BUDGET_MS": "600000",
        "SLUICE_RERANK_CANDIDATES": "12",
        "SLUICE_QUERY_LOG": "false",
    }
    settings_ = Settings(data_dir=data_dir, **{k: v for k, v in backends.items() if v})
    run_sync(settings_, Components(settings_).folder_source(root / "docs", "notes"))
    with sluice_serving(env) as (url, _):
        _wait_for_the_reranker(url)
        yield url


def _wait_for_the_reranker(url: str) -> None:
    """The service loads its reranker in the background and skips reranking until then."""
    for _ in range(600):
        answer = httpx.post(f"{url}/retrieve", json=_body("pumps", "hybrid", True), timeout=120)
        if answer.status_code == 200 and not answer.json()["degraded"]:
            return
        threading.Event().wait(0.5)
    raise TimeoutError("the reranker did not load")


def _body(query: str, mode: str, rerank: bool) -> dict[str, Any]:
    return {"query": query, "mode": mode, "rerank": rerank, "top_k": 8}


def _answer(http: httpx.Client, url: str, body: dict[str, Any]) -> object:
    """What must not depend on other requests: status, hits (ids, every stage's scores and
    ranks), degradations."""
    response = http.post(f"{url}/retrieve", json=body)
    if response.status_code != 200:
        return response.status_code, response.text
    payload = response.json()
    hits = [
        (h["chunk_id"], h["score"], h["rank"], sorted(h["scores"].items())) for h in payload["hits"]
    ]
    return 200, hits, payload["degraded"]


REQUESTS = st.lists(
    st.tuples(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join),
        st.sampled_from(["hybrid", "dense", "bm25"]),
        st.booleans(),
    ),
    min_size=6,
    max_size=12,
)


@settings(
    max_examples=examples(5, 2),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=REQUESTS)
def test_concurrent_requests_get_their_one_at_a_time_answers(
    served: str, requests: list[tuple[str, str, bool]]
) -> None:
    bodies = [_body(*request) for request in requests]
    with httpx.Client(timeout=120) as http:
        alone = [_answer(http, served, body) for body in bodies]
    assert all(answer[0] == 200 for answer in alone), alone  # type: ignore[index]
    start = threading.Barrier(len(bodies))

    def together(body: dict[str, Any]) -> object:
        with httpx.Client(timeout=120) as http:
            start.wait()
            return [_answer(http, served, body) for _ in range(2)]

    with ThreadPoolExecutor(len(bodies)) as pool:
        at_once = list(pool.map(together, bodies))
    for body, expected, got in zip(bodies, alone, at_once, strict=True):
        assert got == [expected, expected], body
