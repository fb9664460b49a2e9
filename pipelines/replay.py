"""Replay: the queries users sent, searched again on another collection version, and how much
the answers change. Where no golden set exists, the logged queries are the best sample of what
a new version will be asked."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.stats import kendalltau

from index.contracts import PayloadFilter, SearchMode
from index.query_log import filter_from_json
from index.search.searcher import IndexSearcher

DEPTH = 10


@dataclass(frozen=True)
class LoggedQuery:
    query: str
    mode: SearchMode
    payload_filter: PayloadFilter | None
    tenants: tuple[str, ...] | None
    logged: tuple[str, ...] = ()
    """The chunk ids answered when it was logged."""


@dataclass
class ChangedQuery:
    query: str
    mode: str
    overlap: float


@dataclass
class ReplayReport:
    baseline: str
    candidate: str
    queries: int = 0
    """Distinct logged requests replayed (mode, filter and tenants included)."""
    records: int = 0
    skipped_without_text: int = 0
    """Records kept only as a hash (query text off): they cannot be searched again."""
    overlap_at_10: float = math.nan
    """Mean share of the baseline's top 10 that the candidate's top 10 also has."""
    rank_correlation: float = math.nan
    """Mean Kendall tau-b of the two top-10 rankings over their union (an id missing from one
    ranks below its tenth); 1: same order."""
    logged_overlap_at_10: float = math.nan
    """The baseline today against what was answered when logged: drift since."""
    baseline_p50_ms: float = math.nan
    candidate_p50_ms: float = math.nan
    most_changed: list[ChangedQuery] = field(default_factory=list)

    @property
    def latency_ratio(self) -> float:
        return self.candidate_p50_ms / self.baseline_p50_ms if self.baseline_p50_ms else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Figures that could not be measured (no queries) are null, not NaN (not JSON)."""
        data = {**asdict(self), "latency_ratio": self.latency_ratio}
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in data.items()}

    def to_markdown(self) -> str:
        lines = [
            f"### Replay: {self.queries} logged queries on `{self.candidate}` "
            f"against `{self.baseline}`",
            "",
            "| overlap@10 | rank correlation | baseline p50 | candidate p50 | ratio "
            "| drift since logged |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {self.overlap_at_10:.3f} | {self.rank_correlation:.3f} "
            f"| {self.baseline_p50_ms:.1f} ms | {self.candidate_p50_ms:.1f} ms "
            f"| {self.latency_ratio:.2f}× | {1 - self.logged_overlap_at_10:.3f} |",
        ]
        if self.skipped_without_text:
            lines += ["", f"{self.skipped_without_text} records kept no query text: not replayed."]
        if self.most_changed:
            lines += ["", "| most changed | mode | overlap@10 |", "|---|---|---:|"]
            lines += [f"| {c.query} | {c.mode} | {c.overlap:.2f} |" for c in self.most_changed]
        return "\n".join(lines)


@dataclass(frozen=True)
class ReplaySample:
    queries: tuple[LoggedQuery, ...] = ()
    records: int = 0
    """Query log records read."""
    without_text: int = 0
    """Records kept only as a hash: they cannot be searched again."""


NOTHING_LOGGED = ReplaySample()


COLUMNS = ("query", "mode", "payload_filter", "tenants", "chunk_ids")
"""What replay reads of a query log record."""


def logged_queries(newest_first: Iterable[dict[str, Any]], limit: int = 1000) -> ReplaySample:
    """The latest `limit` distinct replayable requests of query log records given newest
    first (the latest answer of a repeated query is its reference); reading stops there."""
    distinct: dict[tuple[object, ...], LoggedQuery] = {}
    without_text = records = 0
    for row in newest_first:
        if len(distinct) >= limit:
            break
        records += 1
        if not row.get("query"):
            without_text += 1
            continue
        tenants = tuple(row["tenants"]) if row.get("tenants") is not None else None
        key = (row["query"], row["mode"], row.get("payload_filter"), tenants)
        if key not in distinct:
            distinct[key] = LoggedQuery(
                row["query"],
                row["mode"],
                filter_from_json(row.get("payload_filter")),
                tenants,
                tuple(row.get("chunk_ids") or ()),
            )
    return ReplaySample(tuple(distinct.values()), records, without_text)


def _overlap(reference: list[str], other: list[str]) -> float:
    if not reference:
        return 1.0 if not other else 0.0
    return len(set(reference[:DEPTH]) & set(other[:DEPTH])) / min(DEPTH, len(reference))


def _rank_correlation(a: list[str], b: list[str]) -> float:
    union = list(dict.fromkeys(a + b))
    if len(union) < 2:
        return 1.0
    ranks_a = [a.index(i) if i in a else len(a) for i in union]
    ranks_b = [b.index(i) if i in b else len(b) for i in union]
    tau = kendalltau(ranks_a, ranks_b).statistic
    return float(tau) if not math.isnan(tau) else 0.0


def replay(
    searcher: IndexSearcher, sample: ReplaySample, baseline: str, candidate: str
) -> ReplayReport:
    """Each query on both versions with the same options, alternating which goes first so
    neither is favoured by a warm cache; `searcher` should have no result cache."""
    queries = sample.queries
    report = ReplayReport(baseline, candidate, len(queries), sample.records, sample.without_text)
    if not queries:
        return report
    overlaps: list[float] = []
    taus: list[float] = []
    drift: list[float] = []
    latency: dict[str, list[float]] = {baseline: [], candidate: []}
    changed: list[ChangedQuery] = []
    for number, asked in enumerate(queries):
        answers: dict[str, list[str]] = {}
        order = (baseline, candidate) if number % 2 == 0 else (candidate, baseline)
        for version in order:
            started = time.perf_counter()
            outcome = searcher.search(
                version,
                asked.query,
                asked.mode,
                DEPTH,
                None,
                asked.payload_filter,
                False,
                asked.tenants,
            )
            latency[version].append((time.perf_counter() - started) * 1000)
            answers[version] = [hit.id for hit in outcome.result.hits]
        overlap = _overlap(answers[baseline], answers[candidate])
        overlaps.append(overlap)
        taus.append(_rank_correlation(answers[baseline][:DEPTH], answers[candidate][:DEPTH]))
        if asked.logged:
            drift.append(_overlap(list(asked.logged), answers[baseline]))
        changed.append(ChangedQuery(asked.query, asked.mode, overlap))
    report.overlap_at_10 = statistics.fmean(overlaps)
    report.rank_correlation = statistics.fmean(taus)
    report.logged_overlap_at_10 = statistics.fmean(drift) if drift else math.nan
    report.baseline_p50_ms = statistics.median(latency[baseline])
    report.candidate_p50_ms = statistics.median(latency[candidate])
    report.most_changed = sorted(changed, key=lambda c: c.overlap)[:5]
    return report
