"""`POST /feedback`: only the key that asked may speak of its answer, only of that answer's hits;
an event id is taken once, across API processes; items land in Parquet beside the query log,
joinable to it on `request_id`, and are counted in `/metrics`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from retrieval_api.keys import KeyStore
from tests.conftest import ingest_folder, metric_samples


@pytest.fixture
def served(
    tmp_path: Path, embedder: object
) -> Iterator[tuple[TestClient, Settings, dict[str, str]]]:
    from retrieval_api.app import create_app

    folder = tmp_path / "docs"
    folder.mkdir()
    for number, text in enumerate(["Pump impellers wear.", "Pump seals leak.", "Valves stick."]):
        (folder / f"d{number}.md").write_text(f"# Doc {number}\n\n{text}\n")
    settings = Settings(data_dir=tmp_path / "data", auth="required")
    ingest_folder(settings, folder, embedder, source_name="docs")
    keys = KeyStore(settings.api_keys_path)
    made = {"asker": keys.create(["default"])[0], "other": keys.create(["default"])[0]}
    made["admin"] = keys.create([], scope="admin")[0]
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        yield client, settings, made


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _answer(client: TestClient, key: str) -> dict[str, Any]:
    answer = client.post(
        "/retrieve", json={"query": "pump", "mode": "bm25", "top_k": 2}, headers=_bearer(key)
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["request_id"] == answer.headers["x-request-id"]
    return body


def test_the_asker_may_label_the_answers_hits_once_per_event(
    served: tuple[TestClient, Settings, dict[str, str]],
) -> None:
    client, settings, keys = served
    answer = _answer(client, keys["asker"])
    second = answer["hits"][1]
    event = {
        "request_id": answer["request_id"],
        "event_id": "e-1",
        "items": [
            {"chunk_id": second["chunk_id"], "label": "clicked", "rank": 2, "dwell_ms": 4200},
            {"doc_id": answer["hits"][0]["doc_id"], "label": "not_relevant"},
        ],
    }
    taken = client.post("/feedback", json=event, headers=_bearer(keys["asker"]))
    assert taken.status_code == 200, taken.text
    assert taken.json() | {} == {**taken.json(), "items": 2, "duplicate": False}
    again = client.post("/feedback", json=event, headers=_bearer(keys["asker"])).json()
    assert (again["items"], again["duplicate"]) == (0, True), "a retry is stored once"

    other = client.post(
        "/feedback", json={**event, "event_id": "e-2"}, headers=_bearer(keys["other"])
    )
    assert other.status_code == 404, "another key's answer is not found, not refused"
    unknown = client.post(
        "/feedback",
        json={**event, "request_id": "nope", "event_id": "e-3"},
        headers=_bearer(keys["asker"]),
    )
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
    stranger = {"chunk_id": "not-a-hit", "label": "relevant"}
    foreign = client.post(
        "/feedback",
        json={**event, "event_id": "e-4", "items": [stranger]},
        headers=_bearer(keys["asker"]),
    )
    assert foreign.status_code == 422 and "not-a-hit" in foreign.json()["error"]["message"]
    both = {"chunk_id": second["chunk_id"], "doc_id": second["doc_id"], "label": "clicked"}
    assert (
        client.post(
            "/feedback",
            json={**event, "event_id": "e-5", "items": [both]},
            headers=_bearer(keys["asker"]),
        ).status_code
        == 422
    )
    assert client.post("/feedback", json=event).status_code == 401

    metrics = metric_samples(client.get("/metrics", headers=_bearer(keys["admin"])).text)
    counted = {
        labels: v for (name, labels), v in metrics.items() if name == "sluice_feedback_items_total"
    }
    assert sorted(counted.values()) == [1.0, 1.0], counted

    client.app.state.service.feedback[0].flush()  # type: ignore[attr-defined]
    client.app.state.service.query_log.flush()  # type: ignore[attr-defined]
    rows = pq.read_table(settings.data_dir / "feedback").to_pylist()
    assert [(r["label"], r["answer_rank"], r["rank"]) for r in rows] == [
        ("clicked", 2, 2),
        ("not_relevant", 1, None),
    ]
    logged = pq.read_table(settings.query_log_dir).to_pylist()
    joined = [q for q in logged if q["request_id"] == rows[0]["request_id"]]
    assert len(joined) == 1 and rows[0]["chunk_id"] == joined[0]["chunk_ids"][1]


def test_another_api_process_finds_the_answer_once_written_and_the_event_taken(
    served: tuple[TestClient, Settings, dict[str, str]],
) -> None:
    from retrieval_api.app import create_app

    client, settings, keys = served
    answer = _answer(client, keys["asker"])
    event = {
        "request_id": answer["request_id"],
        "event_id": "shared-1",
        "items": [{"chunk_id": answer["hits"][0]["chunk_id"], "label": "relevant"}],
    }
    with TestClient(create_app(settings), base_url="http://localhost") as replica:
        early = replica.post("/feedback", json=event, headers=_bearer(keys["asker"]))
        assert early.status_code == 404, "not written out by the process that answered yet"
        client.app.state.service.query_log.flush()  # type: ignore[attr-defined]
        late = replica.post("/feedback", json=event, headers=_bearer(keys["asker"]))
        assert late.status_code == 200 and not late.json()["duplicate"], late.text
    repeat = client.post("/feedback", json=event, headers=_bearer(keys["asker"])).json()
    assert repeat["duplicate"], "the event id is taken for every process"


def test_without_a_query_log_feedback_cannot_be_checked(tmp_path: Path) -> None:
    from retrieval_api.app import create_app

    settings = Settings(data_dir=tmp_path / "data", query_log=False)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        refused = client.post(
            "/feedback",
            json={
                "request_id": "r",
                "event_id": "e",
                "items": [{"doc_id": "d", "label": "clicked"}],
            },
        )
    assert refused.status_code == 409 and "query log" in refused.json()["error"]["message"]


def test_many_feedback_calls_at_once_store_each_event_once(
    served: tuple[TestClient, Settings, dict[str, str]],
) -> None:
    """Every event sent three times in a row (a client's retries) from 16 threads at once, so
    copies of one event race each other: each is taken by exactly one call and stored once, as
    one call at a time would store it (seen failing with a check-then-insert `take`)."""
    from concurrent.futures import ThreadPoolExecutor

    client, settings, keys = served
    events = []
    for number in range(12):
        answer = _answer(client, keys["asker"])
        label = ("clicked", "relevant", "not_relevant")[number % 3]
        items = [{"chunk_id": hit["chunk_id"], "label": label} for hit in answer["hits"]]
        request_id = answer["request_id"]
        events.append({"request_id": request_id, "event_id": f"e{number}", "items": items})

    def send(event: dict[str, Any]) -> tuple[str, int, bool]:
        answer = client.post("/feedback", json=event, headers=_bearer(keys["asker"]))
        assert answer.status_code == 200, answer.text
        return event["event_id"], answer.json()["items"], answer.json()["duplicate"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, [event for event in events for _ in range(3)]))
    for event in events:
        taken = [r for r in results if r[0] == event["event_id"] and not r[2]]
        assert len(taken) == 1 and taken[0][1] == len(event["items"]), (event, results)
    client.app.state.service.feedback[0].flush()  # type: ignore[attr-defined]
    rows = pq.read_table(settings.data_dir / "feedback").to_pylist()
    stored = sorted((r["request_id"], r["chunk_id"], r["label"]) for r in rows)
    expected = sorted(
        (e["request_id"], item["chunk_id"], item["label"]) for e in events for item in e["items"]
    )
    assert stored == expected
