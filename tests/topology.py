"""The compose file's topology as loopback processes (tests, `bench/partitioned_ingest.py`):
PostgreSQL (the state, and the Prefect server's database), a Prefect server on it, `prefect
worker` processes on one process pool, and `sluice serve` replicas on one data dir (the
embedded engine: one machine). Each process logs to a file of its own under `base`.

Each worker runs at most `WORKER_LIMIT` flow runs at once, as a deployment should set it: a
partitioned run's parent holds a slot while its partitions run, and the limit is what spreads
the partitions over the workers rather than the first worker to poll taking them all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port, sluice_serving, wait_until_answering
from tests.postgres_server import new_database, postgres_server

POOL = "sluice-pool"
WORKER_LIMIT = 2


@dataclass
class Topology:
    base: Path
    env: dict[str, str]
    """The deploying shell's: Sluice's settings, the state URL, the Prefect API."""
    state_url: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)
    replicas: list[str] = field(default_factory=list)

    def sluice(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sluice", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_deployment(self, name: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        """`prefect deployment run NAME --watch`: until the flow run ends."""
        return subprocess.run(
            [sys.executable, "-m", "prefect", "deployment", "run", name, "--watch",
             "--watch-interval", "2"],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def worker_of(self, flow_run_id: str) -> str | None:
        """Which worker's log names the flow run (workers log each run they submit)."""
        for index, log in enumerate(self.worker_logs):
            if flow_run_id in log.read_text(errors="replace"):
                return f"worker-{index}"
        return None


def _env_without_ours() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}


@contextmanager
def loopback_topology(
    base: Path,
    config: Path,
    workers: int,
    replicas: int,
    exports: str,
    worker_limit: int = WORKER_LIMIT,
) -> Iterator[Topology]:
    """Everything started and healthy; `config`: the sources' TOML. Stopped on exit."""
    base.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        server = stack.enter_context(postgres_server(free_port()))
        state_url, prefect_db = new_database(server), new_database(server)
        port = free_port()
        prefect_env = _env_without_ours() | {
            "PREFECT_HOME": str(base / "prefect-home"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_db.replace(
                "postgresql://", "postgresql+asyncpg://"
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        prefect = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=prefect_env, stdout=(base / "prefect-server.log").open("w"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        stack.callback(_stop, prefect)
        api = f"http://127.0.0.1:{port}/api"
        wait_until_answering(f"{api}/health", prefect, 180, "the Prefect server")
        common = {
            "PREFECT_API_URL": api,
            "SLUICE_STATE_URL": state_url,
            "SLUICE_MODEL_EXPORTS_DIR": exports,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        }
        topology = Topology(
            base,
            _env_without_ours()
            | common
            | {"SLUICE_DATA_DIR": str(base / "data"), "SLUICE_CONFIG_FILE": str(config)},
            state_url,
        )
        deployed = topology.sluice("deploy", "--work-pool", POOL)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        for index in range(workers):
            folder = base / f"worker-{index}"  # none of the deploying shell's settings
            folder.mkdir(exist_ok=True)
            log = folder / "worker.log"
            worker = subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
                 "--name", f"worker-{index}", "--limit", str(worker_limit)],
                env=_env_without_ours() | common, cwd=folder, stdout=log.open("w"),
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            stack.callback(_stop, worker)
            topology.workers.append(worker)
            topology.worker_logs.append(log)
        for _ in range(replicas):
            url, _server = stack.enter_context(sluice_serving(topology.env))
            topology.replicas.append(url)
        _wait_for_workers(topology)
        yield topology


def _wait_for_workers(topology: Topology, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    for log in topology.worker_logs:
        while not re.search(r"started!|Worker .* started", log.read_text(errors="replace")):
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The process and what it started (a worker's flow runs) go; SIGKILL, as a test's
    subject is never how fast a server shuts down."""
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
