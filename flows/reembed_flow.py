"""Changing an index's embedding model without downtime: build, gate, catch up, switch; rollback.

A re-embed never reads a source: the serving collection holds every chunk's text, payload and
BM25 vector, and `index.version_sync.sync_version` copies them into a new collection version with
dense vectors from the new model (through the embedding cache, so a repeated or resumed run
embeds nothing twice). Ingest runs go on meanwhile into the serving version; just before the
alias moves, under the index's run lock, the new version is caught up with what they wrote, so no
write is lost. `/retrieve` resolves the alias and the collection's model on every request, so a
running API follows the switch without a restart.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.beir import BeirDataset
from flows.evaluation import MODES, EvalMode, evaluate_modes, load_golden_set
from flows.progress import report_progress
from index.embedder import SentenceTransformerEmbedder
from index.embedding_cache import EmbeddingCache
from index.from_settings import (
    build_cache,
    build_embedder,
    build_store,
    embedder_for_spec,
    fusion_params,
)
from index.searcher import IndexNotFoundError, IndexSearcher
from index.types import CollectionSpec, VectorStore
from index.version_sync import SyncStats, sync_version
from index.versions import collection_name, create_next_version, version_number, versions_of
from ingest.manifest import Manifest, RunLock
from sluice.settings import Settings

SWAP_WAIT_S = 3600.0
"""How long a switch waits for a running ingest to finish (it then catches up with its writes)."""


class GateUnavailable(ValueError):
    """No golden set to compare the versions on, and the switch was not forced."""


@dataclass
class GateResult:
    mode: str
    metric: str
    tolerance: float
    queries: int
    old: float
    new: float

    @property
    def passed(self) -> bool:
        return self.new >= self.old - self.tolerance


@dataclass
class ReembedReport:
    index: str
    model: str
    previous: str
    built: str
    dimension: int
    outcome: Literal["switched", "rejected"]
    forced: bool
    resumed: bool
    points: int
    embedded: int
    from_cache: int
    embed_seconds: float
    gate: dict[str, Any] | None
    scores: dict[str, dict[str, dict[str, float]]]
    caught_up: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            f"### Re-embed of '{self.index}' with `{self.model}`: {self.outcome}",
            "",
            f"{self.previous} → {self.built} ({self.dimension} dimensions, {self.points} points; "
            f"{self.embedded} embedded, {self.from_cache} from the cache"
            f"{', resumed' if self.resumed else ''}).",
        ]
        if self.gate:
            gate = self.gate
            lines += [
                "",
                f"Gate: {gate['metric']} in {gate['mode']} mode on {gate['queries']} golden "
                f"queries, tolerance {gate['tolerance']}: old {gate['old']:.4f}, "
                f"new {gate['new']:.4f} → {'passed' if gate['passed'] else 'failed'}"
                f"{' (forced)' if self.forced and not gate['passed'] else ''}.",
            ]
        elif self.forced:
            lines += ["", "No gate: switched with --force."]
        if self.caught_up:
            lines += [
                "",
                f"Caught up before the switch: {self.caught_up['points']} points written, "
                f"{self.caught_up['stale_versions']} stale document versions removed.",
            ]
        if self.dropped:
            lines += ["", "Dropped by retention: " + ", ".join(self.dropped) + "."]
        lines += ["", "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items())]
        return "\n".join(lines)


def reembed(
    settings: Settings,
    model: str,
    force: bool = False,
    golden: Path | None = None,
    store: VectorStore | None = None,
    wait_for_lock_s: float = SWAP_WAIT_S,
) -> ReembedReport:
    """Plain-Python re-embed of the configured index with `model`; the flow and tests call this.

    `store`: one the caller holds open (a process that also serves); by default one is opened.
    """
    started = time.perf_counter()
    golden = golden or settings.golden_set
    if golden is None and not force:
        raise GateUnavailable(
            "no golden set to compare the two versions on: set SLUICE_GOLDEN_SET (or pass "
            "--golden); --force switches without a comparison"
        )
    dataset = load_golden_set(golden) if golden is not None else None
    own_store = store is None
    store = store or build_store(settings)
    manifest = Manifest(settings.manifest_path())
    alias = settings.index_name
    try:
        with RunLock(_reembed_lock_path(settings), alias, activity="re-embed of"):
            previous = _serving_spec(store, alias)
            scores: dict[str, dict[str, dict[str, float]]] = {}
            gate_seconds = 0.0
            if dataset is not None:
                # The serving version is scored first: a golden set that matches nothing in
                # the index would pass any model, and is refused before hours of embedding.
                gate_started = time.perf_counter()
                scores[previous.name] = _evaluate(settings, store, dataset, previous)
                gate_seconds = time.perf_counter() - gate_started
                if not _gated(settings, scores[previous.name]) and not force:
                    raise GateUnavailable(
                        f"the golden set {golden} scores 0 on the serving version {previous.name}:"
                        " its relevant entries match no document in the index (entries are file"
                        " names or BEIR ids, the last segment of a document's URI)"
                    )
            embedder = build_embedder(settings, model)
            embedder.warm_up()  # a model that cannot load fails here, before a version exists
            target, resumed = _build_target(store, manifest, alias, previous, embedder)
            cache = build_cache(settings, embedder)
            build = sync_version(
                store,
                previous.name,
                target.name,
                embedder,
                cache,
                lambda done, total: report_progress("re-embed", done, total),
            )
            gate: GateResult | None = None
            if dataset is not None:
                gate_started = time.perf_counter()
                scores[target.name] = _evaluate(settings, store, dataset, target, embedder)
                gate_seconds += time.perf_counter() - gate_started
                gate = GateResult(
                    settings.gate_mode,
                    settings.gate_metric,
                    settings.gate_tolerance,
                    len(dataset.queries),
                    _gated(settings, scores[previous.name]),
                    _gated(settings, scores[target.name]),
                )
            report = ReembedReport(
                index=alias,
                model=embedder.model_id,
                previous=previous.name,
                built=target.name,
                dimension=target.dimension,
                outcome="rejected",
                forced=force,
                resumed=resumed,
                points=store.count(target.name),
                embedded=build.embedded,
                from_cache=build.from_cache,
                embed_seconds=round(build.embed_seconds, 2),
                gate={**asdict(gate), "passed": gate.passed} if gate else None,
                scores=scores,
            )
            if gate is None or gate.passed or force:
                catch_up, report.dropped = _switch(
                    settings,
                    store,
                    manifest,
                    previous,
                    target,
                    embedder,
                    cache,
                    scores,
                    wait_for_lock_s,
                )
                report.outcome = "switched"
                report.points = store.count(target.name)
                report.caught_up = {
                    "points": catch_up.points_written,
                    "stale_versions": catch_up.stale_versions_removed,
                }
            else:
                # The new model's vectors stay in the cache: a forced rerun only re-writes points.
                manifest.record_version(
                    target.name,
                    "rejected",
                    scores[target.name],
                    note=f"gate failed against "
                    f"{previous.name}: {gate.new:.4f} < {gate.old:.4f} - {gate.tolerance}",
                )
                store.drop_collection(target.name)
        report.seconds = {
            "build": round(build.seconds, 2),
            "gate": round(gate_seconds, 2),
            "total": round(time.perf_counter() - started, 2),
        }
        return report
    finally:
        manifest.close()
        if own_store:
            store.close()


def _gated(settings: Settings, scores: dict[str, dict[str, float]]) -> float:
    """The score the gate compares: its metric in its mode."""
    return scores[settings.gate_mode][settings.gate_metric]


def _reembed_lock_path(settings: Settings) -> Path:
    """One re-embed per index at a time (ingest runs go on; they take the run lock)."""
    return settings.run_lock_path().with_suffix(".reembed.lock")


def _serving_spec(store: VectorStore, alias: str) -> CollectionSpec:
    name = store.resolve_alias(alias)
    spec = store.collection_spec(name) if name else None
    if spec is None:
        raise IndexNotFoundError(f"index '{alias}' does not exist yet; ingest documents first")
    return spec


def _build_target(
    store: VectorStore,
    manifest: Manifest,
    alias: str,
    previous: CollectionSpec,
    embedder: SentenceTransformerEmbedder,
) -> tuple[CollectionSpec, bool]:
    """An unfinished build of the same model to resume, else a new version. Unfinished builds
    of other models are abandoned work (only one re-embed runs at a time) and are dropped;
    versions this manifest knows nothing of are left alone."""
    records = manifest.versions()
    for version in versions_of(store, alias):
        name = collection_name(alias, version)
        record = records.get(name)
        if version <= version_number(previous.name) or (record and record.state != "building"):
            continue
        spec = store.collection_spec(name)
        same_build = spec is not None and (
            spec.embedding_model,
            spec.query_prefix,
            spec.passage_prefix,
            spec.bm25,
        ) == (embedder.model_id, embedder.query_prefix, embedder.passage_prefix, previous.bm25)
        if same_build and spec is not None:
            return spec, True
        if record is not None:
            store.drop_collection(name)
            manifest.record_version(name, "dropped", note="abandoned build of another model")
    # BM25 vectors are copied as they are, so the new version keeps the old parameters.
    target = create_next_version(store, alias, embedder, previous.bm25)
    manifest.record_version(target.name, "building", {}, note=f"re-embed of {previous.name}")
    return target, False


def _evaluate(
    settings: Settings,
    store: VectorStore,
    dataset: BeirDataset,
    spec: CollectionSpec,
    embedder: SentenceTransformerEmbedder | None = None,
) -> dict[str, dict[str, float]]:
    """A version's scores in dense mode and the gate's mode, with the `sluice eval` harness;
    `embedder`: one already loaded for the version's model."""
    loaded = embedder or embedder_for_spec(settings, spec)
    searcher = IndexSearcher(store, lambda _: loaded)
    modes: list[EvalMode] = [m for m in MODES if m in ("dense", settings.gate_mode)]
    return evaluate_modes(
        dataset, searcher, spec.name, modes, settings.candidate_pool, fusion_params(settings)
    )


def _switch(
    settings: Settings,
    store: VectorStore,
    manifest: Manifest,
    previous: CollectionSpec,
    target: CollectionSpec,
    embedder: SentenceTransformerEmbedder,
    cache: EmbeddingCache,
    scores: dict[str, dict[str, dict[str, float]]],
    wait_for_lock_s: float,
) -> tuple[SyncStats, list[str]]:
    """Catches `target` up with what ingest wrote into `previous` meanwhile, moves the alias,
    and applies retention, under the run lock so that no ingest or rollback runs in between.
    Returns the catch-up and the versions retention dropped."""
    alias = settings.index_name
    with RunLock(settings.run_lock_path(), alias, wait_for_lock_s):
        serving = _serving_spec(store, alias)
        if serving.name != previous.name:
            raise RuntimeError(
                f"index '{alias}' switched to {serving.name} during the re-embed; run it again"
            )
        catch_up = sync_version(store, previous.name, target.name, embedder, cache)
        store.set_alias(alias, target.name)
        manifest.record_version(target.name, "serving", scores.get(target.name))
        manifest.record_version(previous.name, "retired", scores.get(previous.name))
        dropped = apply_retention(store, manifest, alias, settings.keep_versions)
    return catch_up, dropped


def apply_retention(store: VectorStore, manifest: Manifest, alias: str, keep: int) -> list[str]:
    """Keeps the serving version and the `keep - 1` that served most recently (then the
    newest); drops the rest. Call under the run lock."""
    serving = store.resolve_alias(alias)
    records = manifest.versions()

    def last_served(name: str) -> tuple[float, int]:
        record = records.get(name)
        served = record.updated_at if record and record.state == "retired" else 0.0
        return served, version_number(name)

    others = sorted(
        (collection_name(alias, v) for v in versions_of(store, alias)),
        key=last_served,
        reverse=True,
    )
    dropped = [name for name in others if name != serving][max(0, keep - 1) :]
    for name in dropped:
        store.drop_collection(name)
        manifest.record_version(name, "dropped", note="retention")
    return dropped


@dataclass
class RollbackReport:
    index: str
    previous: str
    serving: str
    embedding_model: str
    points: int
    caught_up: dict[str, int]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback(
    settings: Settings,
    to: int | None = None,
    store: VectorStore | None = None,
    wait_for_lock_s: float = SWAP_WAIT_S,
) -> RollbackReport:
    """Points the index back at version `to` (default: the newest older one kept), first
    catching it up with what was ingested since it last served, with its own model."""
    started = time.perf_counter()
    own_store = store is None
    store = store or build_store(settings)
    manifest = Manifest(settings.manifest_path())
    alias = settings.index_name
    try:
        with RunLock(settings.run_lock_path(), alias, wait_for_lock_s):
            current = _serving_spec(store, alias)
            records = manifest.versions()

            def served(version: int) -> bool:
                """A version that served before; one this manifest does not know is trusted
                only if older than the serving one."""
                record = records.get(collection_name(alias, version))
                if record is None:
                    return version < version_number(current.name)
                return record.state in ("retired", "serving")

            candidates = [
                v
                for v in versions_of(store, alias)
                if v != version_number(current.name) and served(v)
            ]
            older = [v for v in candidates if v < version_number(current.name)]
            number = to if to is not None else (older[-1] if older else None)
            target = (
                store.collection_spec(collection_name(alias, number))
                if number in candidates
                else None
            )
            if target is None:
                kept = ", ".join(str(v) for v in candidates) or "none"
                raise ValueError(
                    f"no version to roll back to from {current.name}: asked for "
                    f"{to or 'the previous'}; versions of '{alias}' that served before and are "
                    f"kept: {kept}"
                )
            embedder = embedder_for_spec(settings, target)
            catch_up = sync_version(
                store, current.name, target.name, embedder, build_cache(settings, embedder)
            )
            store.set_alias(alias, target.name)
        manifest.record_version(current.name, "retired", note=f"rolled back to {target.name}")
        manifest.record_version(target.name, "serving", note=f"rollback from {current.name}")
        return RollbackReport(
            index=alias,
            previous=current.name,
            serving=target.name,
            embedding_model=target.embedding_model,
            points=store.count(target.name),
            caught_up={
                "points": catch_up.points_written,
                "stale_versions": catch_up.stale_versions_removed,
                "embedded": catch_up.embedded,
            },
            seconds=round(time.perf_counter() - started, 2),
        )
    finally:
        manifest.close()
        if own_store:
            store.close()


@flow(name="reembed", log_prints=True)
def reembed_flow(
    model: str,
    force: bool = False,
    golden: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Re-embeds the index with `model`; switches to it if the golden-set gate passes."""
    settings = settings or Settings()
    report = reembed(settings, model, force, Path(golden) if golden else None)
    create_markdown_artifact(markdown=report.to_markdown(), key=f"reembed-{settings.index_name}")
    print(report.to_markdown())
    return report.to_dict()
