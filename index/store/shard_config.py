"""How the embedded engine lays out a shard: vector storage, graph, segment sizes, payload
indexes. One place,
because the store that creates shards and the child process that optimises them must agree."""

from __future__ import annotations

from typing import Any

from index.contracts import (
    DENSE_VECTOR,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE_VECTOR,
    TENANT_FIELD,
    CollectionSpec,
)

SEGMENT_KB = 48_000
"""Dense vectors per optimised segment (~32,000 chunks of 384-d). Points arrive in the one
appendable segment, which holds everything in RAM and is searched exactly; once its vectors pass
this size the store has the engine build it into an immutable segment (HNSW, everything else on
disk, paged in as searched). Larger segments mean fewer to search but a longer optimisation,
during which the engine holds the process (~10 s here): docs/benchmarks.md, "Scale"."""

MAX_SEGMENTS = 64
"""Segments before the engine merges the smallest: merging rebuilds their graph, so a corpus
below 64 x SEGMENT_KB (~2M chunks of 384-d) is never merged."""


def _optimizers(edge: Any, segment_kb: int) -> Any:
    return edge.EdgeOptimizersConfig(
        default_segment_number=MAX_SEGMENTS, max_segment_size=2 * segment_kb
    )


def _hnsw(edge: Any) -> Any:
    """Qdrant's default graph, with no extra graph per payload value (`payload_m=0`): a filtered
    search walks the one graph with ACORN (`search`), so those only cost build time and RAM."""
    return edge.HnswIndexConfig(
        m=16, ef_construct=100, full_scan_threshold=10_000, payload_m=0, memory=edge.Memory.Cold
    )


def _dense_params(edge: Any, spec: CollectionSpec) -> Any:
    """The dense vector's storage: float32 on disk, paged in as searched, or with int8
    quantisation the int8 copies pinned in RAM and the originals read only to rescore."""
    if spec.vector_quantization == "none":
        return edge.EdgeVectorParams(spec.dimension, edge.Distance.Cosine, memory=edge.Memory.Cold)
    if spec.vector_quantization == "int8":
        int8 = edge.ScalarQuantizationConfig(
            edge.ScalarType.Int8, quantile=0.99, memory=edge.Memory.Pinned
        )
        return edge.EdgeVectorParams(
            spec.dimension, edge.Distance.Cosine, quantization_config=int8, memory=edge.Memory.Cold
        )
    raise ValueError(f"unknown vector quantization {spec.vector_quantization!r}")


def shard_config(edge: Any, spec: CollectionSpec, segment_kb: int) -> Any:
    """Optimised segments keep everything on disk (`Cold`: paged in as searched), so the RAM
    an ingest holds is the appendable segment's, whatever the corpus size."""
    sparse = edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf, memory=edge.Memory.Cold)
    return edge.EdgeConfig(
        vectors={DENSE_VECTOR: _dense_params(edge, spec)},
        sparse_vectors={SPARSE_VECTOR: sparse},
        hnsw_config=_hnsw(edge),
        optimizers=_optimizers(edge, segment_kb),
        payload_memory=edge.Memory.Cold,
    )


def create_payload_indexes(edge: Any, shard: Any, spec: CollectionSpec) -> None:
    """The payload fields filters use, indexed on disk; the tenant field as Qdrant's tenant
    index where the collection has tenants."""
    cold = edge.Memory.Cold
    keyword = edge.KeywordIndexParams(memory=cold, enable_hnsw=False)
    for key in KEYWORD_FIELDS:
        shard.update(edge.UpdateOperation.create_field_index(key, keyword))
    integer = edge.IntegerIndexParams(lookup=True, range=True, memory=cold, enable_hnsw=False)
    for key in INTEGER_FIELDS:
        shard.update(edge.UpdateOperation.create_field_index(key, integer))
    if spec.tenants:
        tenant_index = edge.KeywordIndexParams(is_tenant=True, memory=cold)
        shard.update(edge.UpdateOperation.create_field_index(TENANT_FIELD, tenant_index))
