"""`/metrics` after known traffic: request counts by route, status, mode and tenant; stage
histograms; the serving version; ingest runs read from the index's history at scrape time."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from retrieval_api.app import create_app
from retrieval_api.keys import KeyStore
from tests.conftest import ingest_folder, metric_samples


def test_metrics_count_known_traffic_and_read_runs_of_other_processes(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "data", auth="required")
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\n\nThe impeller wears out.\n")
    ingest_folder(settings, folder, embedder, source_name="acme", tenant="acme")
    keys = KeyStore(settings.api_keys_path)
    reader, _ = keys.create(["acme"])
    admin, _ = keys.create([], scope="admin")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        as_reader = {"Authorization": f"Bearer {reader}"}
        for query in ("pump", "impeller", "wear"):
            assert client.post("/retrieve", json={"query": query}, headers=as_reader).is_success
        client.post("/retrieve", json={"query": "pump", "mode": "bm25"}, headers=as_reader)
        client.post("/retrieve", json={"query": ""}, headers=as_reader)
        client.post("/retrieve", json={"query": "pump"})
        assert client.get("/metrics", headers=as_reader).status_code == 403
        assert client.get("/metrics").status_code == 401

        (folder / "seal.md").write_text("# Seal\n\nThe seal leaks.\n")  # a run after start-up
        ingest_folder(settings, folder, embedder, source_name="acme", tenant="acme")
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    samples = metric_samples(scraped.text)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    requests = "sluice_requests_total"
    assert value(requests, route="/retrieve", status="200", mode="hybrid", tenant="acme") == 3
    assert value(requests, route="/retrieve", status="200", mode="bm25", tenant="acme") == 1
    assert value(requests, route="/retrieve", status="422", mode="", tenant="") == 1
    assert value(requests, route="/retrieve", status="401", mode="", tenant="") == 1
    assert value(requests, route="/metrics", status="403", mode="", tenant="") == 1
    assert value("sluice_retrieve_stage_seconds_count", stage="total") == 4
    assert value("sluice_retrieve_stage_seconds_count", stage="embed") == 3
    assert (
        value(
            "sluice_index_info",
            index="docs",
            collection="docs__v1",
            embedding_model="sentence-transformers/all-MiniLM-L6-v2",
            embedding_backend="torch",
            tenants="true",
        )
        == 1
    )
    assert value("sluice_index_points", index="docs") == 2
    assert value("sluice_index_documents", index="docs", status="indexed") == 2
    source = "acme"  # the source name the run was recorded under
    assert value("sluice_ingest_runs_total", index="docs", source=source, state="completed") == 2
    assert value("sluice_ingest_documents_total", index="docs", source=source, outcome="new") == 2
    assert value("sluice_ingest_last_success_timestamp_seconds", index="docs", source=source) > 0
    _the_dashboard_asks_only_for_metrics_that_exist(scraped.text)


def _the_dashboard_asks_only_for_metrics_that_exist(scraped: str) -> None:
    """The Grafana dashboard compose provisions reads names this app exposes."""
    import json
    import re

    dashboard = Path(__file__).resolve().parents[1] / "deploy/grafana/dashboards/sluice.json"
    panels = json.loads(dashboard.read_text())["panels"]
    asked = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"sluice_[a-z0-9_]+", target["expr"])
    }
    exposed = {family.name for family in text_string_to_metric_families(scraped)}
    assert asked and asked <= exposed, asked - exposed
