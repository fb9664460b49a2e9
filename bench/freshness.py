"""Freshness of a live folder: how long from a file's edit until `/retrieve` finds it.

    .venv/bin/python bench/freshness.py ../shared/data/docs [--edits 60]
        [--sustained-minutes 5] [--rate 1000] [--idle-s 30]

A copy of DOCS (the 70 shared documents) is the live folder. `sluice serve` starts first on a
fresh data dir (embedded engine, default backends, so it owns the shards), then `sluice ingest
FOLDER --watch --json` beside it; once the watcher has reconciled the folder:

- **Edits**: `--edits` single-file changes in turn, a third each: a new Markdown file, an edit
  of one (a line appended), a delete of one made before. Each carries a word made up for it; the
  time is from the write to the first `/retrieve` (BM25, top 10) whose hits include the file (or,
  for a delete, no longer do), polled every 50 ms. Prints p50, p95 and max per kind and overall.
- **Sustained**: `--rate` files a minute rewritten for `--sustained-minutes` (a pool of 200
  Markdown files, round robin, spread evenly), with the lag of every live batch the watcher
  reports (`lag_s`: change seen to searchable) per minute: p50, p95 and max, and the files each
  batch carried. A backlog shows as a lag that grows minute over minute.
- **Webhook** (`--webhook N`): N times, a new file in a second folder, a configured source
  `hook` that nothing watches, then `POST /sources/hook/sync` with its path; the time from the
  request to the first `/retrieve` that finds it. `sluice deploy` serves the deployment (the
  data dir's own Prefect server) and runs each sync warm in its own process
  (`flows/webhook_runs.py`); `--only-webhook` measures this alone.
- **Idle**: the watcher's CPU (user + system, from /proc) over `--idle-s` with nothing changing,
  as a share of one core.
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
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serve_during_ingest import _free_port  # noqa: E402

POLL_S = 0.05


class Watcher:
    """`sluice ingest FOLDER --watch --json`, its reports collected as they come."""

    def __init__(self, folder: Path, env: dict[str, str], log: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sluice", "ingest", str(folder), "--watch", "--json"],
            env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, cwd=ROOT,
        )  # fmt: skip
        self.reports: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.reports.append(json.loads(line))

    def cpu_s(self) -> float:
        return _cpu_s(self.process.pid)

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=120)


def _serve(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=(data_dir.parent / "serve.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise TimeoutError("sluice serve did not answer")


def _found(client: httpx.Client, url: str, word: str, path: Path) -> bool:
    response = client.post(f"{url}/retrieve", json={"query": word, "mode": "bm25", "top_k": 10})
    if response.status_code != 200:
        return False
    return any(hit["uri"].endswith(path.name) for hit in response.json()["hits"])


def _until(client: httpx.Client, url: str, word: str, path: Path, present: bool) -> float:
    started = time.perf_counter()
    deadline = started + 120
    while time.perf_counter() < deadline:
        if _found(client, url, word, path) == present:
            return time.perf_counter() - started
        time.sleep(POLL_S)
    return float("inf")


def _stats(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"n {len(values)}, p50 {statistics.median(values):.2f} s, p95 {p95:.2f} s, "
        f"max {ordered[-1]:.2f} s"
    )


def edits(folder: Path, client: httpx.Client, url: str, count: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"create": [], "edit": [], "delete": []}
    made: list[tuple[Path, str]] = []
    for number in range(count):
        word = f"zq{number:04d}fresh"
        kind = ("create", "edit", "delete")[number % 3]
        if kind == "delete" and made:
            path, old_word = made.pop(0)
            path.unlink()
            times[kind].append(_until(client, url, old_word, path, False))
            continue
        if kind == "edit" and made:
            path, _ = made[-1]
            with path.open("a") as file:
                file.write(f"\nAn added line with {word}.\n")
            made[-1] = (path, word)
        else:
            kind = "create"
            path = folder / f"fresh-{number:04d}.md"
            path.write_text(f"# Fresh {number}\n\nA new page about {word} and its neighbours.\n")
            made.append((path, word))
        times[kind].append(_until(client, url, word, path, True))
    return times


def sustained(folder: Path, watcher: Watcher, minutes: float, rate: int) -> None:
    pool = folder / "sustained"
    pool.mkdir()
    interval = 60.0 / rate
    before = len(watcher.reports)
    started = time.monotonic()
    written = 0
    while (elapsed := time.monotonic() - started) < minutes * 60:
        name = pool / f"page-{written % 200:03d}.md"
        name.write_text(f"# Page {written % 200}\n\nRevision {written} of a busy page.\n")
        written += 1
        time.sleep(max(0.0, started + written * interval - time.monotonic()))
    time.sleep(10)  # the last batches
    batches = [r for r in watcher.reports[before:] if r.get("live")]
    print(f"sustained: {written} writes in {elapsed:.0f} s ({written / elapsed * 60:.0f}/min), "
          f"{len(batches)} live batches")  # fmt: skip
    per_minute: dict[int, list[dict[str, Any]]] = {}
    t0 = batches[0]["finished_at"] if batches else 0.0
    for batch in batches:
        per_minute.setdefault(int((batch["finished_at"] - t0) // 60), []).append(batch)
    print("| minute | batches | files per batch (median) | lag |")
    print("|---:|---:|---:|---|")
    for minute, group in sorted(per_minute.items()):
        files = statistics.median(b["new"] + b["changed"] for b in group)
        print(
            f"| {minute + 1} | {len(group)} | {files:.0f} | {_stats([b['lag_s'] for b in group])} |"
        )


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children it waited for (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def webhook(
    base: Path, env: dict[str, str], client: httpx.Client, url: str, count: int, idle_s: float
) -> None:
    hook = base / "hook"
    deploy = subprocess.Popen(
        [sys.executable, "-m", "sluice", "deploy"], env=env, cwd=ROOT,
        stdout=(base / "deploy.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    times, prefect = [], 0
    try:
        for number in range(count + 1):  # the first waits for the deployment: not counted
            path = hook / f"hook-{number:03d}.md"
            word = f"zw{number:04d}hook"
            path.write_text(f"# Hook {number}\n\nA published page about {word}.\n")
            started = time.perf_counter()
            ask = client.post(f"{url}/sources/hook/sync", json={"paths": [path.name]})
            while ask.status_code == 503 and time.perf_counter() - started < 300:
                time.sleep(1)
                ask = client.post(f"{url}/sources/hook/sync", json={"paths": [path.name]})
            assert ask.status_code == 202, ask.text
            _until(client, url, word, path, True)
            if number:
                times.append(time.perf_counter() - started)
        prefect = json.loads((base / "data" / "prefect" / "server.json").read_text())["pid"]
        time.sleep(3)
        before, t0 = (_cpu_s(deploy.pid), _cpu_s(prefect)), time.monotonic()
        time.sleep(idle_s)
        spent = time.monotonic() - t0
        print(f"idle `sluice deploy`: {(_cpu_s(deploy.pid) - before[0]) / spent:.2%} of one core, "
              f"its Prefect server {(_cpu_s(prefect) - before[1]) / spent:.2%}, over "
              f"{spent:.0f} s")  # fmt: skip
    finally:
        deploy.terminate()
        deploy.wait(timeout=120)
    before_s, t0 = _cpu_s(prefect), time.monotonic()
    time.sleep(idle_s)
    spent = time.monotonic() - t0
    print(f"its Prefect server with no `sluice deploy`: {(_cpu_s(prefect) - before_s) / spent:.2%}")
    warm = (base / "deploy.log").read_text().count("run warm in the `sluice deploy` process")
    print(f"webhook (request to found): {_stats(times)}; {warm} of {count + 1} runs warm")
    print("  each: " + " ".join(f"{t:.2f}" for t in times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("docs", type=Path)
    parser.add_argument("--edits", type=int, default=60)
    parser.add_argument("--sustained-minutes", type=float, default=0.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--webhook", type=int, default=0)
    parser.add_argument("--only-webhook", action="store_true", help="no live folder, no edits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        folder = base / "live"
        shutil.copytree(args.docs, folder, ignore=shutil.ignore_patterns("MANIFEST.tsv"))
        data_dir = base / "data"
        data_dir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        (base / "hook").mkdir()
        config = base / "sluice.toml"
        config.write_text(f'[[sources]]\ntype = "local"\nname = "hook"\npath = "{base / "hook"}"\n')
        env |= {
            "SLUICE_DATA_DIR": str(data_dir),
            "SLUICE_QUERY_LOG": "false",
            "SLUICE_CONFIG_FILE": str(config),
        }
        if exports := os.environ.get("SLUICE_MODEL_EXPORTS_DIR"):
            env["SLUICE_MODEL_EXPORTS_DIR"] = exports
        server, url = _serve(data_dir, env)
        if args.only_webhook:
            try:
                with httpx.Client(timeout=30) as client:
                    webhook(base, env, client, url, args.webhook, args.idle_s)
            finally:
                server.terminate()
                server.wait(timeout=60)
            return
        watcher = Watcher(folder, env, base / "watch.log")
        try:
            started = time.monotonic()
            while not watcher.reports:  # the reconcile of the whole folder
                assert watcher.process.poll() is None, (base / "watch.log").read_text()[-3000:]
                time.sleep(0.5)
            print(f"reconciled {watcher.reports[0]['new']} documents in "
                  f"{time.monotonic() - started:.0f} s")  # fmt: skip
            with httpx.Client(timeout=30) as client:
                times = edits(folder, client, url, args.edits)
            for kind, values in times.items():
                print(f"{kind}: {_stats(values)}")
            print(f"all: {_stats([t for values in times.values() for t in values])}")
            time.sleep(3)
            cpu_before, t0 = watcher.cpu_s(), time.monotonic()
            time.sleep(args.idle_s)
            idle = (watcher.cpu_s() - cpu_before) / (time.monotonic() - t0)
            print(f"idle: {idle:.2%} of one core over {args.idle_s:.0f} s")
            if args.sustained_minutes:
                sustained(folder, watcher, args.sustained_minutes, args.rate)
            if args.webhook:
                with httpx.Client(timeout=30) as client:
                    webhook(base, env, client, url, args.webhook, args.idle_s)
        finally:
            print(f"watcher exit code on SIGTERM: {watcher.stop()}")
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
