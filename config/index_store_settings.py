"""Where the index lives: the embedded engine in the data dir, or a Qdrant server or cluster
(and how its collections are laid out over nodes). Part of `Settings`, read from `SLUICE_*`
like the rest; a group of their own to keep each file to one subject."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from config.model_names import Quantization


class IndexStoreSettings(BaseModel):
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; unset means the embedded engine."
    )
    qdrant_api_key: SecretStr | None = None
    deployment_id: str | None = Field(
        default=None,
        description="The name every process of one deployment gives it (unset: the Qdrant URL, "
        "or the data dir's id). Set it where processes reach one Qdrant by different URLs.",
    )
    qdrant_shard_number: int | None = Field(
        default=None,
        ge=1,
        description="Qdrant server: shards of each new collection (unset: Qdrant's default, one "
        "per node at creation). Fixed for a collection's life; a re-embed makes a new one "
        "(docs/scaling.md).",
    )
    qdrant_replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Qdrant server: copies of each shard on different nodes (unset: 1). 2 keeps "
        "every shard readable with one node down.",
    )
    qdrant_write_consistency_factor: int | None = Field(
        default=None,
        ge=1,
        description="Qdrant server: replicas that must confirm a write before it returns "
        "(unset: 1; at most the replication factor).",
    )
    qdrant_tenant_shards: list[str] = Field(
        default_factory=list,
        description="Qdrant server: tenants whose points get a shard key of their own (Qdrant "
        "custom sharding), so a large tenant's searches and writes touch its shards alone; "
        "every other tenant shares the key `shared`. Set before an index is created (or "
        "re-embed to apply it).",
    )
    owner_timeout_s: float = Field(
        default=20.0,
        gt=0,
        le=300,
        description="Embedded engine: how long a process waits for the process that holds the "
        "data dir's index to answer (connecting, its key challenge, each call) before giving "
        "up for now: 503 with Retry-After from the API, one line and exit 2 from a command. An "
        "owner at a long call says it is alive, so only a stopped or wedged one times out.",
    )
    vector_quantization: Quantization = Field(
        default="none",
        description="int8: a new index (or a re-embed) keeps its dense vectors as int8 in RAM "
        "(a quarter of float32's bytes) and the float32 originals on disk, on either engine. "
        "Only optimised segments hold int8 (the embedded engine optimises a segment past "
        "~32,000 chunks of 384-d); measured in docs/benchmarks.md.",
    )
    vector_quantization_rescore: bool = Field(
        default=True,
        description="Score the best int8 candidates again on the original vectors (exact "
        "scores; each read from the page cache or disk); false: int8 scores only.",
    )
    vector_quantization_oversampling: float = Field(
        default=2.0,
        ge=1,
        le=16,
        description="With rescoring, candidates taken from the int8 vectors per hit asked for.",
    )
