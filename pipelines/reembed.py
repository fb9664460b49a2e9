"""Changing an index's embedding model without downtime: build, gate, catch up, switch.

A re-embed never reads a source: the serving collection holds every chunk's text, payload and BM25
vector, and `index.write.version_sync.sync_version` copies them into a new collection version with
dense vectors from the new model (through the embedding cache, so a repeated or resumed run embeds
nothing twice; BM25 vectors are re-weighted to the corpus's current mean chunk length where it
drifted from the recorded one, `_current_bm25`). Ingest runs go on meanwhile into the serving
version; just before the alias moves, under the index's run lock, the new version is caught up with
what they wrote, so no write is lost. `/retrieve` resolves the alias and the collection's model on
every request, so a running API follows the switch without a restart.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import asdict, replace

from index.bm25.stats import REMEASURE, measure_avgdl
from index.contracts import Bm25Params, CollectionSpec, Embedder
from index.search.searcher import IndexSearcher
from index.versions import collection_name, create_next_version, version_number, versions_of
from index.write.embedding_cache import EmbeddingCache
from index.write.version_sync import SyncStats, sync_version
from pipelines.beir import BeirDataset
from pipelines.cost import DEFAULT_RATES, Cost, CostRates, CpuMeter, gpu_seconds
from pipelines.gate import GatePolicy, GateResult, GateUnavailable, Scores, score_version
from pipelines.progress import report_progress
from pipelines.reembed_report import ReembedReport
from pipelines.replay import NOTHING_LOGGED, ReplaySample, replay
from pipelines.retention import apply_retention
from pipelines.versioned_index import VersionedIndex

SWAP_WAIT_S = 3600.0
"""How long a switch waits for a running ingest to finish (it then catches up with its writes)."""


def reembed(
    index: VersionedIndex,
    embedder: Embedder,
    policy: GatePolicy,
    golden: BeirDataset | None,
    reembed_lock: AbstractContextManager[object],
    keep_versions: int,
    force: bool = False,
    wait_for_lock_s: float = SWAP_WAIT_S,
    rates: CostRates = DEFAULT_RATES,
    logged: ReplaySample = NOTHING_LOGGED,
    min_overlap: float = 0.5,
) -> ReembedReport:
    """Re-embeds the index with `embedder`'s model; switches if the gate on `golden` passes
    (or `force`). Without a golden set, queries users sent (`logged`) are replayed on both
    versions and the switch needs their answers to keep `min_overlap` (overlap@10): a guard
    against a broken model, not a measure of a better one. With a golden set the replay is
    reported beside its score. `reembed_lock` keeps a second re-embed of the index out.
    `rates`: what its cost estimate charges."""
    started = time.perf_counter()
    meter = CpuMeter()
    if golden is None and not logged.queries and not force:
        raise GateUnavailable(
            "no golden set to compare the two versions on, and no logged queries to replay: "
            "set SLUICE_GOLDEN_SET (or pass --golden), or let the API log queries with their "
            "text; --force switches without a comparison"
        )
    store = index.store
    with reembed_lock:
        previous = index.serving_spec()
        scores: dict[str, Scores] = {}
        gate_seconds = 0.0
        if golden is not None:
            # The serving version is scored first: a golden set that matches nothing in the
            # index would pass any model, and is refused before hours of embedding.
            gate_started = time.perf_counter()
            scores[previous.name] = score_version(
                policy, golden, store, previous, index.embedder_for(previous)
            )
            gate_seconds = time.perf_counter() - gate_started
            if not policy.score(scores[previous.name]) and not force:
                raise GateUnavailable(
                    f"the golden set {golden.name} scores 0 on the serving version "
                    f"{previous.name}: its relevant entries match no document in the index "
                    "(entries are file names or BEIR ids, the last segment of a document's URI)"
                )
        embedder.warm_up()  # a model that cannot load fails here, before a version exists
        catch_up = SyncStats()
        target, resumed = _build_target(index, previous, embedder)
        cache = index.cache_for(embedder)
        build = sync_version(
            store,
            previous.name,
            target.name,
            embedder,
            cache,
            lambda done, total: report_progress("re-embed", done, total),
        )
        gate: GateResult | None = None
        if golden is not None:
            gate_started = time.perf_counter()
            scores[target.name] = score_version(policy, golden, store, target, embedder)
            gate_seconds += time.perf_counter() - gate_started
            gate = GateResult(
                policy.mode,
                policy.metric,
                policy.tolerance,
                len(golden.queries),
                policy.score(scores[previous.name]),
                policy.score(scores[target.name]),
            )
        replayed = None
        if logged.queries:
            gate_started = time.perf_counter()
            models = {previous.name: index.embedder_for(previous), target.name: embedder}
            replayed = replay(
                IndexSearcher(store, lambda spec: models[spec.name]),
                logged,
                previous.name,
                target.name,
            )
            gate_seconds += time.perf_counter() - gate_started
        replay_passed = replayed is not None and replayed.overlap_at_10 >= min_overlap
        report = ReembedReport(
            index=index.alias,
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
            replay=(
                {
                    **replayed.to_dict(),
                    "min_overlap": min_overlap,
                    "passed": replay_passed,
                    "decides": gate is None,
                }
                if replayed
                else None
            ),
        )
        passed = gate.passed if gate is not None else replay_passed
        if passed or force:
            catch_up, report.dropped = _switch(
                index, previous, target, embedder, cache, scores, keep_versions, wait_for_lock_s
            )
            report.outcome = "switched"
            report.points = store.count(target.name)
            report.caught_up = {
                "points": catch_up.points_written,
                "stale_versions": catch_up.stale_versions_removed,
            }
        else:
            # The new model's vectors stay in the cache: a forced rerun only re-writes points.
            if gate is not None:
                note = f"{gate.new:.4f} < {gate.old:.4f} - {gate.tolerance}"
            else:
                assert replayed is not None
                note = (
                    f"{replayed.queries} logged queries replayed keep overlap@10 "
                    f"{replayed.overlap_at_10:.3f} < {min_overlap}"
                )
            index.manifest.record_version(
                target.name,
                "rejected",
                scores.get(target.name, {}),
                note=f"gate failed against {previous.name}: {note}",
            )
            store.drop_collection(target.name)
    report.seconds = {
        "build": round(build.seconds, 2),
        "gate": round(gate_seconds, 2),
        "total": round(time.perf_counter() - started, 2),
    }
    embedded = build.embedded + catch_up.embedded
    report.cost = Cost.of(
        rates,
        meter.seconds(),
        gpu_seconds(embedder, embedded, build.embed_seconds + catch_up.embed_seconds),
        build.tokens_embedded + catch_up.tokens_embedded,
        build.points_written + catch_up.points_written,
    )
    return report


def _build_target(
    index: VersionedIndex, previous: CollectionSpec, embedder: Embedder
) -> tuple[CollectionSpec, bool]:
    """An unfinished build of the same model to resume, else a new version. Unfinished builds
    of other models are abandoned work (only one re-embed runs at a time) and are dropped;
    versions this manifest knows nothing of are left alone."""
    store, manifest = index.store, index.manifest
    records = manifest.versions()
    bm25 = _current_bm25(index, previous)
    for version in versions_of(store, index.alias):
        name = collection_name(index.alias, version)
        record = records.get(name)
        if version <= version_number(previous.name) or (record and record.state != "building"):
            continue
        spec = store.collection_spec(name)
        same_build = spec is not None and (
            spec.embedding_model,
            spec.embedding_backend,
            spec.query_prefix,
            spec.passage_prefix,
            replace(spec.bm25, avg_doc_length=0),
            spec.vector_quantization,
        ) == (
            embedder.model_id,
            embedder.backend.label,
            embedder.query_prefix,
            embedder.passage_prefix,
            replace(previous.bm25, avg_doc_length=0),
            index.vector_quantization,
        )
        if same_build and spec is not None:
            return spec, True
        if record is not None:
            store.drop_collection(name)
            manifest.record_version(name, "dropped", note="abandoned build of another model")
    target = create_next_version(store, index.alias, embedder, bm25, index.vector_quantization)
    manifest.record_version(target.name, "building", {}, note=f"re-embed of {previous.name}")
    return target, False


def _current_bm25(index: VersionedIndex, previous: CollectionSpec) -> Bm25Params:
    """The serving version's BM25 parameters, avgdl re-measured on a sample of its vectors
    where the corpus drifted from it (`sync_version` re-weights the copied vectors to it)."""
    drift = measure_avgdl(index.store, previous.name, previous.bm25)
    if drift is None or abs(drift.drift) <= REMEASURE:
        return previous.bm25
    return replace(previous.bm25, avg_doc_length=round(drift.current, 2))


def _switch(
    index: VersionedIndex,
    previous: CollectionSpec,
    target: CollectionSpec,
    embedder: Embedder,
    cache: EmbeddingCache,
    scores: dict[str, Scores],
    keep_versions: int,
    wait_for_lock_s: float,
) -> tuple[SyncStats, list[str]]:
    """Catches `target` up with what ingest wrote into `previous` meanwhile, moves the alias,
    and applies retention, under the run lock so that no ingest or rollback runs in between.
    Returns the catch-up and the versions retention dropped."""
    with index.run_lock(wait_for_lock_s):
        serving = index.serving_spec()
        if serving.name != previous.name:
            raise RuntimeError(
                f"index '{index.alias}' switched to {serving.name} during the re-embed; "
                "run it again"
            )
        catch_up = sync_version(index.store, previous.name, target.name, embedder, cache)
        index.store.set_alias(index.alias, target.name)
        index.manifest.record_version(target.name, "serving", scores.get(target.name))
        index.manifest.record_version(previous.name, "retired", scores.get(previous.name))
        dropped = apply_retention(index, keep_versions)
    return catch_up, dropped
