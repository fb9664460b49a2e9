"""Tenants are enforced by the server: through `/retrieve`, with keys of different tenants,
random queries, modes and filters never return a point of a tenant the key does not grant, on
both store backends; a request can narrow its tenants, never widen them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient

from config.settings import Settings
from index.bm25.encoder import Bm25Encoder
from index.contracts import Bm25Params, CollectionSpec, Embedder, IndexedPoint, VectorStore
from index.search.searcher import IndexSearcher
from index.store.embedded import EdgeVectorStore
from index.store.server import QdrantClientStore
from retrieval_api.app import create_app
from retrieval_api.deps import get_searcher
from retrieval_api.keys import KeyStore
from tests.conftest import examples

pytestmark = [
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

TENANTS = ("acme", "globex", "initech", "default")
WORDS = "pump valve seal leak motor gear belt fuse relay panel solar wind boiler hose".split()
SOURCES = ("handbook", "wiki", "tickets")
FILETYPES = ("pdf", "md", "html")
POINTS = 600
DIM = 16
# The app loads the serving spec's model at start-up; searches go through `StubEmbedder`.
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SPEC = CollectionSpec("docs__v1", MODEL, DIM, Bm25Params(avg_doc_length=6), tenants=True)
GRANTS: dict[str, tuple[str, ...]] = {
    "acme": ("acme",),
    "globex": ("globex",),
    "acme+initech": ("acme", "initech"),
    "default": ("default",),
}


class StubEmbedder:
    """A fixed random vector per query text: the search path, not the model, is under test."""

    def embed_query(self, text: str) -> Any:
        seed = sum(ord(c) for c in text)
        vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
        return vector / np.linalg.norm(vector)


def _points() -> tuple[list[IndexedPoint], dict[str, str]]:
    rng = np.random.default_rng(11)
    encoder = Bm25Encoder(SPEC.bm25)
    points, tenant_of = [], {}
    for i in range(POINTS):
        tenant = TENANTS[i % len(TENANTS)]
        text = " ".join(rng.choice(WORDS, size=6))
        doc = i % 90
        payload: dict[str, Any] = {
            "chunk_id": f"00000000-0000-0000-0000-{i:012d}",
            "doc_id": f"doc-{doc}",
            "doc_version": "v1",
            "ordinal": i // 90,
            "text": text,
            "uri": f"file:///srv/{tenant}/doc-{doc}.md",
            "title": f"Doc {doc}",
            "pages": [int(rng.integers(1, 20))],
            "element_types": ["NarrativeText"],
            "source": SOURCES[doc % 3],
            "filetype": FILETYPES[doc % 3],
            "tenant": tenant,
        }
        vector = rng.normal(size=DIM).astype(np.float32)
        point_id = str(payload["chunk_id"])
        tenant_of[point_id] = tenant
        points.append(
            IndexedPoint(
                point_id,
                vector / np.linalg.norm(vector),
                encoder.encode_documents([text])[0],
                payload,
            )
        )
    return points, tenant_of


@pytest.fixture(scope="module", params=["edge", "client"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    """A served index of four tenants on one backend, and a key per grant (plus admin)."""
    root = tmp_path_factory.mktemp(f"tenants-{request.param}")
    store: VectorStore = (
        EdgeVectorStore(root / "qdrant")
        if request.param == "edge"
        else QdrantClientStore(QdrantClient(location=":memory:"))
    )
    points, tenant_of = _points()
    store.create_collection(SPEC)
    store.set_alias("docs", SPEC.name)
    store.upsert(SPEC.name, points)
    settings_ = Settings(data_dir=root / "data", auth="required")
    keys = KeyStore(settings_.api_keys_path)
    issued = {name: keys.create(list(grant))[0] for name, grant in GRANTS.items()}
    issued["admin"] = keys.create([], scope="admin")[0]
    app = create_app(settings_, store=store)
    searcher = IndexSearcher(store, embedder_for=lambda spec: cast(Embedder, StubEmbedder()))
    app.dependency_overrides[get_searcher] = lambda: searcher
    with TestClient(app, base_url="http://localhost") as client:
        yield client, issued, tenant_of
    store.close()


filters = st.fixed_dictionaries(
    {},
    optional={
        "sources": st.lists(st.sampled_from(SOURCES), min_size=1, max_size=3),
        "doc_ids": st.lists(st.sampled_from([f"doc-{i}" for i in range(90)]), min_size=1),
        "tenants": st.lists(st.sampled_from(TENANTS), min_size=1, max_size=4),
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "filetype": st.sampled_from(FILETYPES),
                "pages": st.fixed_dictionaries({"gte": st.integers(1, 19)}),
            },
        ),
    },
)
requests = st.fixed_dictionaries(
    {
        "query": st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join),
        "mode": st.sampled_from(["hybrid", "dense", "bm25"]),
        "top_k": st.integers(1, 60),
        "filters": filters,
    }
)


@settings(
    max_examples=examples(1500, 150),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=requests, holder=st.sampled_from([*GRANTS, "admin"]))
def test_no_key_ever_reads_another_tenants_points(
    served: tuple[TestClient, dict[str, str], dict[str, str]],
    body: dict[str, Any],
    holder: str,
) -> None:
    client, issued, tenant_of = served
    granted = set(TENANTS) if holder == "admin" else set(GRANTS[holder])
    asked = set(body["filters"].get("tenants") or granted)
    answer = client.post(
        "/retrieve", json=body, headers={"Authorization": f"Bearer {issued[holder]}"}
    )
    if not asked <= granted:
        assert answer.status_code == 403, answer.text
        return
    assert answer.status_code == 200, answer.text
    seen = {tenant_of[hit["chunk_id"]] for hit in answer.json()["hits"]}
    assert seen <= asked, (holder, body, seen)


def test_each_tenant_key_finds_its_own_documents(
    served: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    """Confinement is not emptiness: each key gets hits, all of its tenants', and an admin key
    gets every tenant's."""
    client, issued, tenant_of = served
    for holder in [*GRANTS, "admin"]:
        answer = client.post(
            "/retrieve",
            json={"query": "pump valve seal", "top_k": 200, "mode": "bm25"},
            headers={"X-API-Key": issued[holder]},
        )
        seen = {tenant_of[hit["chunk_id"]] for hit in answer.json()["hits"]}
        expected = set(TENANTS) if holder == "admin" else set(GRANTS[holder])
        assert seen == expected, holder


def test_a_random_key_string_or_none_reads_nothing(
    served: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, issued, _ = served
    forged = issued["acme"][:-4] + "".join(random.choices("abcdXYZ0123", k=4))
    for headers in ({}, {"Authorization": f"Bearer {forged}"}, {"X-API-Key": "slk_nope"}):
        answer = client.post("/retrieve", json={"query": "pump"}, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"


def test_an_index_from_before_tenants_is_the_default_tenants(tmp_path: Path) -> None:
    """Its points carry no tenant: a key of the default tenant reads them all, any other none."""
    from index.contracts import MatchAny, PayloadFilter
    from index.search.searcher import confined

    legacy = CollectionSpec("docs__v1", "stub", DIM, Bm25Params())
    user = PayloadFilter(must=(MatchAny("filetype", ("pdf",)),))
    assert confined(user, ("default",), legacy) == user
    assert confined(user, ("default", "acme"), legacy) == user
    scoped = confined(user, ("acme",), legacy)
    assert scoped is not None and scoped.must[0] == MatchAny("tenant", ("acme",))
    assert confined(None, None, legacy) is None
    current = CollectionSpec("docs__v2", "stub", DIM, Bm25Params(), tenants=True)
    scoped = confined(user, ("default",), current)
    assert scoped is not None and list(scoped.must) == [
        MatchAny("tenant", ("default",)),
        *user.must,
    ]


def test_an_index_from_before_tenants_refuses_another_tenant_until_rebuilt(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    from chunking.types import Chunk
    from index.store.factory import open_vector_store
    from index.write.target import ensure_collection

    store = open_vector_store(tmp_path / "qdrant")
    try:
        legacy = CollectionSpec("docs__v1", MODEL, 384, Bm25Params())
        store.create_collection(legacy)
        store.set_alias("docs", legacy.name)
        chunk = Chunk("00000000-0000-0000-0000-000000000001", "d", "v", 0, "text", "u", "t")
        assert ensure_collection(store, "docs", embedder, Bm25Params(), [chunk]) == legacy
        chunk.tenant = "acme"
        with pytest.raises(ValueError, match=r"made before tenants .* sluice reembed --model"):
            ensure_collection(store, "docs", embedder, Bm25Params(), [chunk])
    finally:
        store.close()
