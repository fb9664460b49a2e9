"""What API keys, the tenant filter and the limits cost `/retrieve`, and how exact the rate limit is

Two `sluice serve` processes over two copies of one ingested data dir (so neither serves the
other's shards): one with `SLUICE_AUTH=off`, every tenant, no per-key limit; one requiring a key
of the `default` tenant (every search then carries the tenant condition), with a rate limit far
above the load. Four client threads send hybrid queries to one server at a time, for ROUND_S
seconds, alternating between the two for ROUNDS rounds; medians of the rounds are quoted. Then
a key limited to RATE/s is hammered for 60 s, and the admitted rate is compared with RATE.

    .venv/bin/python bench/access_overhead.py DATA_DIR [--rounds 3] [--round-s 20]

DATA_DIR must hold an index whose serving version has tenants (ingested by this version, or
upgraded with `sluice reembed --model <its model> --force`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

QUERIES = [
    "how do I configure the network interface",
    "install packages from a local mirror",
    "what is the difference between a process and a thread",
    "set up a cron job",
    "mount a disk at boot",
    "change the default shell",
    "firewall rules for ssh",
    "upgrade the distribution release",
    "recover a broken boot loader",
    "configure locales and keyboard",
]
CLIENTS = 4
RATE = 20


def serve(
    data_dir: Path, port: int, auth: str, settings: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`sluice serve` on `data_dir`, ready; `settings`: more SLUICE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env |= {"SLUICE_DATA_DIR": str(data_dir), "SLUICE_AUTH": auth, **(settings or {})}
    command = [sys.executable, "-m", "sluice", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"http://localhost:{port}/ready", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server on {port} did not become ready")
        time.sleep(0.5)


def make_key(data_dir: Path, *args: str, settings: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env |= {"SLUICE_DATA_DIR": str(data_dir), **(settings or {})}
    command = [sys.executable, "-m", "sluice", "keys", "create", *args, "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return str(json.loads(done.stdout)["key"])


def load(url: str, headers: dict[str, str], seconds: float) -> tuple[list[float], dict[int, int]]:
    """CLIENTS threads asking in a loop for `seconds`: each request's latency, and statuses."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = offset
            while time.monotonic() < stop:
                body = {"query": QUERIES[i % len(QUERIES)], "mode": "hybrid", "top_k": 10}
                started = time.perf_counter()
                answer = http.post(f"{url}/retrieve", json=body, headers=headers)
                elapsed = time.perf_counter() - started
                with lock:
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    if answer.status_code == 200:
                        latencies.append(elapsed)
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-s", type=float, default=20.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluice-access-"))
    dirs = {name: work / name for name in ("open", "keyed")}
    for folder in dirs.values():
        shutil.copytree(args.data_dir, folder, ignore=shutil.ignore_patterns("prefect"))
    fast = make_key(dirs["keyed"], "--tenant", "default", "--rate", "100000/s")
    limited = make_key(dirs["keyed"], "--tenant", "default", "--rate", f"{RATE}/s")
    servers = {
        "open": serve(dirs["open"], 8611, "off"),
        "keyed": serve(dirs["keyed"], 8612, "required"),
    }
    urls = {"open": "http://localhost:8611", "keyed": "http://localhost:8612"}
    headers = {"open": {}, "keyed": {"Authorization": f"Bearer {fast}"}}
    try:
        for name in servers:
            load(urls[name], headers[name], 5)  # warm-up
        rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name in servers:
                latencies, statuses = load(urls[name], headers[name], args.round_s)
                assert set(statuses) == {200}, statuses
                ms = sorted(1000 * x for x in latencies)
                p50, p99 = ms[len(ms) // 2], ms[int(len(ms) * 0.99)]
                rounds[name].append((p50, p99, len(ms) / args.round_s))
        print(f"{CLIENTS} clients, hybrid top 10, {args.rounds} rounds of {args.round_s:g} s each")
        medians = {}
        for name, measured in rounds.items():
            p50, p99, rps = (statistics.median(m[i] for m in measured) for i in range(3))
            medians[name] = (p50, p99, rps)
            print(f"{name:6} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {rps:6.1f} req/s")
        (o50, o99, orps), (k50, k99, krps) = medians["open"], medians["keyed"]
        print(
            f"keyed/open: p50 {k50 / o50:.3f}x, p99 {k99 / o99:.3f}x, throughput {krps / orps:.3f}x"
        )
        _, statuses = load(urls["keyed"], {"Authorization": f"Bearer {limited}"}, 60)
        attempted = sum(statuses.values()) / 60
        admitted = statuses.get(200, 0) / 60
        print(
            f"rate limit {RATE}/s (burst {RATE}): attempted {attempted:.1f}/s, admitted "
            f"{admitted:.2f}/s over 60 s ({statuses.get(429, 0)} answered 429)"
        )
    finally:
        for process in servers.values():
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
