"""The compose file's topology as loopback processes (tests/topology.py): PostgreSQL, a Prefect
server on PostgreSQL, two `prefect worker` processes on one process pool, a partitioned ingest
of SciFact split across both, and two `sluice serve` replicas answering `/retrieve` during it.
One partition's process is killed (SIGKILL) mid-run. Checks: the partitions ran on both
workers, the killed one ran again alone, every document is in the index once (no loss, no
duplicate), the parent run sums its partitions, and every request during the ingest answered."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from bench.ingest_throughput import beir_as_files
from state.database import StateDatabase
from tests.conftest import SHARED
from tests.topology import loopback_topology

SCIFACT = SHARED / "data" / "beir" / "scifact"
DOCUMENTS = 600
"""A part of SciFact's 5,183: enough for four partitions of work on two workers in CI's time
(`bench/partitioned_ingest.py` runs the whole corpus)."""

pytestmark = [
    pytest.mark.skipif(not SCIFACT.is_dir(), reason="../shared/data/beir/scifact is absent"),
]


def _ask(urls: list[str], stop: threading.Event, statuses: Counter[str]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            for url in urls:
                answer = client.post(f"{url}/retrieve", json={"query": "cancer cell growth"})
                statuses[f"{url} {answer.status_code}"] += 1


def _kill_a_partition(state_url: str, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first partition's process seen running, a few seconds into its work."""
    db = StateDatabase.postgres(state_url, "index", "docs")
    query = text(
        "SELECT partition, pid FROM run_outcomes WHERE parent_run_id IS NOT NULL"
        " AND state = 'running' ORDER BY run_id LIMIT 1"
    )
    while not stop.is_set():
        try:
            with db.reading() as connection:
                found = connection.execute(query).first()
        except Exception:  # the schema is made by the run's first write
            found = None
        if found is not None:
            time.sleep(3)
            os.kill(found.pid, signal.SIGKILL)
            killed.append(found.partition)
            return
        time.sleep(0.2)


def test_a_partitioned_ingest_over_two_workers_while_two_replicas_answer(
    tmp_path: Path, model_exports: Path
) -> None:
    corpus = beir_as_files(SCIFACT, DOCUMENTS, tmp_path / "scifact")
    config = tmp_path / "sluice.toml"
    config.write_text(
        f'[[sources]]\ntype = "local"\nname = "scifact"\npath = "{corpus}"\npartitions = 4\n'
    )
    with loopback_topology(tmp_path / "run", config, 2, 2, str(model_exports)) as topology:
        statuses: Counter[str] = Counter()
        stop = threading.Event()
        killed: list[int] = []
        asking = threading.Thread(target=_ask, args=(topology.replicas, stop, statuses))
        killing = threading.Thread(
            target=_kill_a_partition, args=(topology.state_url, killed, stop)
        )
        asking.start()
        killing.start()
        try:
            ran = topology.run_deployment("ingest/scifact")
        finally:
            stop.set()
            asking.join(60)
            killing.join(60)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

        runs = topology.sluice("runs", "--json")
        parent = json.loads(runs.stdout)["runs"][0]
        report = json.loads(
            topology.sluice("runs", "--json", "--limit", "1").stdout
        )  # the parent run's row
        status = json.loads(topology.sluice("status", "--json").stdout)["indexes"]["docs"]
        with StateDatabase.postgres(topology.state_url, "index", "docs").reading() as db:
            rows = db.execute(text("SELECT count(*), sum(chunks) FROM documents")).one()
            partitions = db.execute(
                text(
                    "SELECT o.partition, o.external_id, o.state, r.report FROM run_outcomes o"
                    " JOIN runs r ON r.run_id = o.run_id WHERE o.parent_run_id IS NOT NULL"
                )
            ).all()
        workers = {
            row.partition: topology.worker_of(str(row.external_id))
            for row in partitions
            if row.state == "completed"
        }
        attempts = Counter(row.partition for row in partitions)
        log = {
            "parent": {k: v for k, v in parent.items() if k != "cost"},
            "killed": killed,
            "partitions": [
                {
                    "partition": row.partition,
                    "worker": topology.worker_of(str(row.external_id)),
                    "state": row.state,
                    "new": json.loads(row.report).get("new") if row.report else None,
                }
                for row in partitions
            ],
            "documents": rows[0],
            "chunks": rows[1],
            "points": status["points"],
            "requests": dict(statuses),
        }
        (tmp_path / "topology.json").write_text(json.dumps(log, indent=2))
        print(json.dumps(log, indent=2))

    assert parent["state"] == "completed" and parent["new"] == DOCUMENTS, parent
    assert report["runs"][0]["run_id"] == parent["run_id"]
    assert sorted(workers) == [0, 1, 2, 3] and set(workers.values()) == {"worker-0", "worker-1"}
    assert len(killed) == 1 and attempts[killed[0]] == 2, log  # the killed one, again, alone
    assert sum(attempts.values()) == 5
    completed = [p for p in log["partitions"] if p["state"] == "completed"]
    assert len(completed) == 4
    assert [p["state"] for p in log["partitions"] if p not in completed] == ["failed"], log
    assert rows[0] == DOCUMENTS and status["documents"] == DOCUMENTS  # nothing lost
    assert status["points"] == rows[1]  # nothing written twice
    for url in topology.replicas:
        answered = {k: v for k, v in statuses.items() if k.startswith(url)}
        assert answered.get(f"{url} 200", 0) > 0 and sum(answered.values()) == answered.get(
            f"{url} 200"
        ), statuses
