"""A Qdrant server (or qdrant-client's own local mode) through `qdrant-client`.

Production deployments point `SLUICE_QDRANT_URL` at a Qdrant server; tests run the same class
on qdrant-client's in-process local mode, which speaks the same API, to check that it agrees
with the embedded engine.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from index.contracts import (
    DENSE_VECTOR,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE_VECTOR,
    TENANT_FIELD,
    CollectionNotFoundError,
    CollectionSpec,
    FetchedPoint,
    IndexedPoint,
    PayloadFilter,
    RetrievalTuning,
    SearchRequest,
    SearchResult,
)
from index.store.cluster import ClusterLayout, by_shard_key
from index.store.filters import to_client_filter
from index.store.records import PagedReads, fetched_points, scored_points

_SPEC_KEY = "sluice"
_WRITE_KEY = "sluice_write"
"""Collection metadata a writer sets to a new token after each write (`write_stamp`)."""
_TENANT_SHARDS_KEY = "sluice_tenant_shards"
"""Collection metadata: the tenants given shard keys of their own when it was made."""


@contextmanager
def _contract_errors(collection: str) -> Iterator[None]:
    """A missing collection is the contract's `CollectionNotFoundError` on both backends (the
    server answers 404; qdrant-client's local mode raises a ValueError)."""
    try:
        yield
    except UnexpectedResponse as error:
        if error.status_code == 404:
            raise CollectionNotFoundError(f"collection {collection} does not exist") from error
        raise
    except ValueError as error:
        if "not found" in str(error):
            raise CollectionNotFoundError(f"collection {collection} does not exist") from error
        raise


def _dense_params(spec: CollectionSpec) -> models.VectorParams:
    """The dense vector's storage; with int8 quantisation the int8 copies stay in RAM and the
    originals on disk, read only to rescore. (`on_disk` and `always_ram` rather than the newer
    `memory`: the v1.16 server of docker-compose.yml knows only these.)"""
    if spec.vector_quantization == "none":
        return models.VectorParams(size=spec.dimension, distance=models.Distance.COSINE)
    if spec.vector_quantization == "int8":
        int8 = models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True
        )
        return models.VectorParams(
            size=spec.dimension,
            distance=models.Distance.COSINE,
            on_disk=True,
            quantization_config=models.ScalarQuantization(scalar=int8),
        )
    raise ValueError(f"unknown vector quantization {spec.vector_quantization!r}")


class QdrantClientStore(PagedReads):
    """Collections, aliases and hybrid queries on a Qdrant server via its Query API.

    >>> store = QdrantClientStore(QdrantClient(url="http://localhost:6333"))  # doctest: +SKIP
    """

    def __init__(self, client: QdrantClient, layout: ClusterLayout | None = None) -> None:
        self.client = client
        self.layout = layout or ClusterLayout()
        self._routes: dict[str, ClusterLayout] = {}

    def create_collection(self, spec: CollectionSpec) -> None:
        self.client.create_collection(
            spec.name,
            vectors_config={DENSE_VECTOR: _dense_params(spec)},
            sparse_vectors_config={
                SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
            },
            metadata={
                _SPEC_KEY: spec.to_metadata(),
                _TENANT_SHARDS_KEY: list(self.layout.tenant_shards),
            },
            **self.layout.collection_params(),
        )
        self._routes[spec.name] = self.layout  # what its metadata now records
        for shard_key in self.layout.shard_keys() if self.layout.custom_sharding else ():
            self.client.create_shard_key(
                spec.name,
                shard_key,
                shards_number=self.layout.shard_number,
                replication_factor=self.layout.replication_factor,
            )
        for key in KEYWORD_FIELDS:
            self.client.create_payload_index(spec.name, key, models.PayloadSchemaType.KEYWORD)
        for key in INTEGER_FIELDS:
            self.client.create_payload_index(spec.name, key, models.PayloadSchemaType.INTEGER)
        if spec.tenants:
            tenant_index = models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=True
            )
            self.client.create_payload_index(spec.name, TENANT_FIELD, tenant_index)

    def _routing(self, collection: str) -> ClusterLayout:
        """How `collection` was sharded when it was made (a later change of the settings
        applies to the collections made after it: a re-embed). Sluice names collections, not
        aliases, when it reads or writes points, so what is kept by name stays true."""
        if collection not in self._routes:
            metadata = self.client.get_collection(collection).config.metadata or {}
            tenants = tuple(metadata.get(_TENANT_SHARDS_KEY) or ())
            self._routes[collection] = dataclasses.replace(self.layout, tenant_shards=tenants)
        return self._routes[collection]

    def drop_collection(self, name: str) -> None:
        self._routes.pop(name, None)
        self.client.delete_collection(name)

    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def collection_spec(self, name: str) -> CollectionSpec | None:
        if not self.client.collection_exists(name):
            return None
        metadata = self.client.get_collection(name).config.metadata or {}
        data = metadata.get(_SPEC_KEY)
        return CollectionSpec.from_metadata(data) if data else None

    def record_tuning(self, name: str, tuning: RetrievalTuning | None) -> None:
        spec = self.collection_spec(name)
        if spec is None:
            raise CollectionNotFoundError(f"collection {name} does not exist")
        updated = dataclasses.replace(spec, tuning=tuning)
        self.client.update_collection(
            name, metadata={_SPEC_KEY: updated.to_metadata(), _WRITE_KEY: uuid.uuid4().hex}
        )

    def resolve_alias(self, alias: str) -> str | None:
        for description in self.client.get_aliases().aliases:
            if description.alias_name == alias:
                return str(description.collection_name)
        return None

    def set_alias(self, alias: str, collection: str) -> None:
        """Moves the alias atomically: delete and create in one request."""
        with _contract_errors(collection):
            operations: list[Any] = []
            if self.resolve_alias(alias) is not None:
                operations.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                )
            operations.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
                )
            )
            self.client.update_collection_aliases(change_aliases_operations=operations)

    def list_aliases(self) -> dict[str, str]:
        return {
            a.alias_name: a.collection_name
            for a in sorted(self.client.get_aliases().aliases, key=lambda a: a.alias_name)
        }

    def upsert(self, collection: str, points: Sequence[IndexedPoint]) -> None:
        with _contract_errors(collection):
            if not points:
                return
            structs = [
                models.PointStruct(
                    id=point.id,
                    vector={
                        DENSE_VECTOR: point.dense.tolist(),
                        SPARSE_VECTOR: models.SparseVector(
                            indices=point.sparse.indices, values=point.sparse.values
                        ),
                    },
                    payload=point.payload,
                )
                for point in points
            ]
            routing = self._routing(collection)
            if not routing.custom_sharding:
                self.client.upsert(collection, points=structs, wait=True)
            else:  # each point to its tenant's shard key
                for shard_key, positions in by_shard_key(
                    routing, (p.payload for p in points)
                ).items():
                    self.client.upsert(
                        collection,
                        points=[structs[i] for i in positions],
                        wait=True,
                        shard_key_selector=shard_key,
                    )
            self._wrote(collection)

    def delete(self, collection: str, filter: PayloadFilter) -> None:
        with _contract_errors(collection):
            if not filter:
                raise ValueError("refusing to delete with an empty filter")
            client_filter = to_client_filter(filter)
            assert client_filter is not None
            selector = models.FilterSelector(filter=client_filter)
            self.client.delete(
                collection,
                points_selector=selector,
                wait=True,
                shard_key_selector=self._routing(collection).keys_for_filter(filter),
            )
            self._wrote(collection)

    def _wrote(self, collection: str) -> None:
        """Writers in any process stamp the collection, so every reader sees the change."""
        self.client.update_collection(collection, metadata={_WRITE_KEY: uuid.uuid4().hex})

    def write_stamp(self, collection: str) -> str:
        with _contract_errors(collection):
            metadata = self.client.get_collection(collection).config.metadata or {}
            return str(metadata.get(_WRITE_KEY, ""))

    def count(self, collection: str, filter: PayloadFilter | None = None) -> int:
        with _contract_errors(collection):
            return int(
                self.client.count(
                    collection,
                    count_filter=to_client_filter(filter),
                    exact=True,
                    shard_key_selector=self._routing(collection).keys_for_filter(filter),
                ).count
            )

    def distinct_values(self, collection: str, key: str, limit: int = 1_000_000) -> int:
        with _contract_errors(collection):
            facets = self.client.facet(collection, key=key, limit=limit, exact=True)
            return sum(1 for hit in facets.hits if hit.count > 0)

    def _page(
        self, collection: str, offset: Any, page_size: int, with_payload: Any, with_vector: Any
    ) -> tuple[list[Any], Any]:
        with _contract_errors(collection):
            records, next_offset = self.client.scroll(
                collection,
                limit=page_size,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vector,
            )
        return list(records), next_offset

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with _contract_errors(collection):
            records = self.client.retrieve(
                collection, list(ids), with_payload=False, with_vectors=False
            )
        return {str(record.id) for record in records}

    def fetch(self, collection: str, ids: Sequence[str], dense: bool = False) -> list[FetchedPoint]:
        if not ids:
            return []
        with _contract_errors(collection):
            records = self.client.retrieve(
                collection,
                list(ids),
                with_payload=True,
                with_vectors=[DENSE_VECTOR] if dense else False,
            )
        return fetched_points(records)

    def search(self, collection: str, request: SearchRequest) -> SearchResult:
        with _contract_errors(collection):
            query_filter = to_client_filter(request.filter)
            dense = request.dense.tolist() if request.dense is not None else None
            sparse = (
                models.SparseVector(indices=request.sparse.indices, values=request.sparse.values)
                if request.sparse is not None and request.sparse.indices
                else None
            )
            # The same search params as the embedded engine: ACORN on every filtered search keeps
            # filtered HNSW search exact enough on an optimised collection (edge_store.search).
            acorn = models.AcornSearchParams(enable=True) if query_filter else None
            quantized = request.quantized
            sparse_params = models.SearchParams(acorn=acorn) if acorn else None
            params = {
                SPARSE_VECTOR: sparse_params,
                DENSE_VECTOR: models.SearchParams(
                    acorn=acorn,
                    quantization=models.QuantizationSearchParams(
                        rescore=quantized.rescore, oversampling=quantized.oversampling
                    ),
                )
                if quantized
                else sparse_params,
            }
            inputs: list[tuple[Any, str]] = []
            if dense is not None and request.mode in ("dense", "hybrid"):
                inputs.append((dense, DENSE_VECTOR))
            if sparse is not None and request.mode in ("bm25", "hybrid"):
                inputs.append((sparse, SPARSE_VECTOR))
            if not inputs:
                return SearchResult(hits=[])
            # With tenants on shard keys of their own, a tenant's search asks its shards only.
            shard_keys = self._routing(collection).keys_for_filter(request.filter)
            if request.mode != "hybrid":
                query, using = inputs[0]
                response = self.client.query_points(
                    collection,
                    query=query,
                    using=using,
                    limit=request.limit,
                    query_filter=query_filter,
                    search_params=params[using],
                    with_payload=True,
                    shard_key_selector=shard_keys,
                )
                return SearchResult(hits=scored_points(response.points))
            singles = [
                models.QueryRequest(
                    query=q,
                    using=u,
                    limit=request.candidate_pool,
                    filter=query_filter,
                    params=params[u],
                    with_payload=request.candidate_payloads,
                    shard_key=shard_keys,
                )
                for q, u in inputs
            ]
            answers = self.client.query_batch_points(collection, requests=singles)
            by_name = {
                u: scored_points(a.points) for (_, u), a in zip(inputs, answers, strict=True)
            }
            return SearchResult(
                hits=[], dense=by_name.get(DENSE_VECTOR, []), sparse=by_name.get(SPARSE_VECTOR, [])
            )

    def close(self) -> None:
        self.client.close()
