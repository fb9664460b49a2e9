"""Cost accounting: ingest, re-embed and evaluation reports carry what they embedded and the CPU
and GPU seconds they used, priced at the configured rates; `sluice cost` sums the run history
and the query log; `/metrics` exposes the run history's costs and each index's storage."""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from composition.components import Components
from config.settings import Settings
from pipelines.cost import Cost, CostRates, CpuMeter
from sluice.cli.main import app
from tests.test_cli import corpus  # noqa: F401  (the fixture)
from tests.test_evaluation import _tiny_beir

CPU_HOUR = 3600.0  # a CPU-second costs 1
GPU_HOUR = 7200.0  # a GPU-second costs 2


@pytest.fixture
def priced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_COST_CPU_HOUR", str(CPU_HOUR))
    monkeypatch.setenv("SLUICE_COST_GPU_HOUR", str(GPU_HOUR))
    return Settings()


def _priced(cost: dict[str, Any]) -> float:
    return float(cost["cpu_seconds"] / 3600 * CPU_HOUR + cost["gpu_seconds"] / 3600 * GPU_HOUR)


def _stored_token_counts(settings: Settings) -> int:
    store = Components(settings).store()
    try:
        collection = store.resolve_alias(settings.index_name) or ""
        counts = [int(p["token_count"]) for _, p in store.scroll(collection, ["token_count"])]
        return sum(counts)
    finally:
        store.close()


def _burn_cpu(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_cpu_meter_counts_child_processes_once_they_end() -> None:
    """Parse workers are child processes: their CPU is the run's too."""
    meter = CpuMeter()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(_burn_cpu, 0.6).result()
    assert meter.seconds() >= 0.6


def test_cost_is_priced_from_the_rates() -> None:
    cost = Cost.of(CostRates(cpu_hour=1.8, gpu_hour=36.0), 100.0, 10.0, 500, 4)
    assert cost.estimated_cost == pytest.approx(100 / 3600 * 1.8 + 10 / 3600 * 36.0)
    assert Cost.from_dict(cost.to_dict()) == cost


def test_tokens_are_the_known_counts_of_the_texts_embedded_and_a_zero_is_counted_again(
    embedder: Any,
) -> None:
    from chunking.types import text_hash
    from index.write.writer import WriteStats, embed_cached

    texts = ["The impeller of a centrifugal pump wears out.", "Seals leak."]
    stats = WriteStats()
    embed_cached(embedder, None, [text_hash(t) for t in texts], texts, stats, [0, 5])
    assert stats.tokens_embedded == embedder.count_tokens(texts[:1])[0] + 5


def test_ingest_report_costs_what_it_embedded_and_an_unchanged_rerun_embeds_nothing(
    corpus: Path,  # noqa: F811
    priced: Settings,
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: None,
) -> None:
    runner = CliRunner()
    args = ["ingest", str(corpus), "--exclude", "**/*.txt", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    cost = json.loads(first.stdout)["cost"]
    assert cost["tokens_embedded"] == _stored_token_counts(priced) > 0
    assert cost["chunks"] == 2 and cost["cpu_seconds"] > 0 and cost["currency"] == "USD"
    assert cost["estimated_cost"] == pytest.approx(_priced(cost)) and cost["estimated_cost"] > 0

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    rerun = json.loads(again.stdout)["cost"]
    assert (rerun["tokens_embedded"], rerun["chunks"], rerun["gpu_seconds"]) == (0, 0, 0)
    assert rerun["cpu_seconds"] > 0

    # Another index of the same texts finds every vector in the embedding cache.
    monkeypatch.setenv("SLUICE_INDEX_NAME", "copy")
    cached = runner.invoke(app, args)
    assert cached.exit_code == 0, cached.output
    copied = json.loads(cached.stdout)
    assert copied["from_cache"] == 2 and copied["cost"]["tokens_embedded"] == 0
    monkeypatch.delenv("SLUICE_INDEX_NAME")

    summed = runner.invoke(app, ["cost", "--json", "--since", "1h"])
    assert summed.exit_code == 0, summed.output
    summary = json.loads(summed.stdout)
    docs = summary["indexes"]["docs"]
    (source,) = docs["sources"].values()
    assert source["runs"] == 2 and source["chunks"] == 2
    assert source["tokens_embedded"] == cost["tokens_embedded"]
    assert source["cpu_seconds"] == pytest.approx(cost["cpu_seconds"] + rerun["cpu_seconds"])
    assert source["estimated_cost"] == pytest.approx(
        cost["estimated_cost"] + rerun["estimated_cost"]
    )
    assert docs["storage"]["method"] == "disk" and docs["storage"]["bytes"] > 0
    assert docs["retrieval"]["requests"] == 0  # no query log yet
    assert set(summary["indexes"]) == {"docs", "copy"}
    assert summary["estimated_cost"] == pytest.approx(
        docs["estimated_cost"] + summary["indexes"]["copy"]["estimated_cost"]
    )
    shown_cost = runner.invoke(app, ["cost", "--since", "1h"], terminal_width=200)
    assert shown_cost.exit_code == 0, shown_cost.output
    lines = shown_cost.stdout.splitlines()
    assert any("docs" in line and "ingest total" in line for line in lines), shown_cost.stdout
    assert "retrieval (query log)" in shown_cost.stdout and "on disk" in shown_cost.stdout
    assert f"{summary['estimated_cost']:.4f} USD" in lines[-1]
    later = runner.invoke(app, ["cost", "--json", "--index", "docs", "--since", "2999-01-01"])
    assert json.loads(later.stdout)["indexes"]["docs"]["ingest"]["runs"] == 0

    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.stdout)["indexes"]["docs"]
    assert shown["storage"]["bytes"] == docs["storage"]["bytes"]
    assert shown["storage"]["monthly_cost"] > 0
    assert shown["last_runs"][-1]["cost"] == cost
    table = runner.invoke(app, ["status"], terminal_width=200)
    assert "a month" in table.stdout and "tokens" in table.stdout


def test_cost_sums_retrievals_of_the_period_from_the_query_log(
    priced: Settings, tmp_path: Path
) -> None:
    from index.query_log import QueryLog

    runner = CliRunner()
    priced.data_dir.mkdir(parents=True)
    assert json.loads(runner.invoke(app, ["cost", "--json"]).stdout)["indexes"] == {}
    log = QueryLog(priced.query_log_dir, flush_s=3600)
    now = datetime.now(UTC)
    for ago, cost, cpu_ms, index in [
        (timedelta(0), 0.25, 100.0, "docs"),
        (timedelta(minutes=5), 0.5, 300.0, "docs"),
        (timedelta(days=3), 8.0, 1000.0, "docs"),
        (timedelta(0), 1.0, 10.0, "other"),
    ]:
        log.record({"time": now - ago, "index": index, "cost_estimate": cost, "cpu_ms": cpu_ms})
    log.close()
    broken = next(priced.query_log_dir.glob("date=*")) / "part-9.parquet"
    broken.write_bytes(b"PAR1 not a parquet file")
    summed = runner.invoke(app, ["cost", "--json", "--since", "1d"])
    assert summed.exit_code == 0, summed.output
    docs = json.loads(summed.stdout)["indexes"]["docs"]
    assert docs["retrieval"] == {"requests": 2, "estimated_cost": 0.75, "cpu_seconds": 0.4}
    assert docs["estimated_cost"] == pytest.approx(0.75)
    week = json.loads(runner.invoke(app, ["cost", "--json", "--since", "7d"]).stdout)
    assert week["indexes"]["docs"]["retrieval"]["requests"] == 3
    assert week["indexes"]["other"]["retrieval"]["requests"] == 1
    assert runner.invoke(app, ["cost", "--since", "yesterday"]).exit_code == 2


def test_eval_report_carries_its_cost(
    priced: Settings, tmp_path: Path, prefect_server: None
) -> None:
    dataset = _tiny_beir(tmp_path / "tiny")
    args = ["eval", str(dataset), "--mode", "bm25", "--out", str(tmp_path / "reports"), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    cost = report["cost"]
    assert cost["tokens_embedded"] > 0 and cost["chunks"] == report["chunks"] == 2
    assert cost["cpu_seconds"] > 0
    assert cost["estimated_cost"] == pytest.approx(_priced(cost)) and cost["estimated_cost"] > 0
    written = json.loads((tmp_path / "reports" / "tiny.json").read_text())
    assert written["cost"] == cost


def test_reembed_report_costs_the_tokens_of_every_point_it_embedded(
    tmp_path: Path, embedder: Any
) -> None:
    from flows.reembed_flow import run_reembed
    from tests.conftest import ingest_folder
    from tests.derived_models import widened

    settings = Settings(data_dir=tmp_path / "data", cost_cpu_hour=CPU_HOUR, cost_gpu_hour=GPU_HOUR)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    (folder / "seal.md").write_text("# Seal\n\nThe shaft seal leaks when dry.\n")
    ingest_folder(settings, folder, embedder)
    tokens = _stored_token_counts(settings)

    report = run_reembed(settings, str(widened(tmp_path / "wide")), force=True)
    assert report.outcome == "switched"
    assert report.cost.tokens_embedded == tokens > 0 and report.cost.chunks == 2
    assert report.cost.cpu_seconds > 0
    assert report.cost.estimated_cost == pytest.approx(_priced(report.cost.to_dict()))
    assert report.to_dict()["cost"]["tokens_embedded"] == tokens
    assert "Cost: " in report.to_markdown()


def test_metrics_carry_ingest_costs_and_index_storage(tmp_path: Path, embedder: Any) -> None:
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from flows.ingest_flow import run_sync
    from retrieval_api.app import create_app

    settings = Settings(
        data_dir=tmp_path / "data", auth="off", cost_cpu_hour=CPU_HOUR, cost_gpu_hour=GPU_HOUR
    )
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    report = run_sync(settings, Components(settings).folder_source(folder))
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        scraped = client.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }
    labels = (("index", "docs"), ("source", folder.resolve().as_uri()))
    assert samples[("sluice_ingest_tokens_embedded_total", labels)] == (report.cost.tokens_embedded)
    assert report.cost.tokens_embedded > 0
    assert samples[("sluice_ingest_cpu_seconds_total", labels)] == pytest.approx(
        report.cost.cpu_seconds
    )
    assert samples[("sluice_ingest_estimated_cost_total", labels)] == pytest.approx(
        report.cost.estimated_cost
    )
    assert report.cost.estimated_cost > 0
    assert samples[("sluice_index_storage_bytes", (("index", "docs"),))] > 0
