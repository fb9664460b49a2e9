"""Any start order on one data dir: `sluice serve`, an ingest, a deployment run, a re-embed, a
rollback, `tune`, `eval`, `status` and `versions` each work whether they start before or after
the others, and every API process answers `/retrieve` (and says so on `/ready`) throughout.

Whichever process opens the embedded store first owns its shards; the others are its clients
(`index/store/shared.py`). So each command runs here once as a client of a serving owner
(`sluice serve` started first) and once as the owner with `sluice serve` started second as its
client; the quick inspecting commands and a second ingest also run as clients of an ingest that
owns the shards. A command started first is held, as owner, right after it opens the store,
until the API started second answers: the overlap a long run gives, without depending on how
fast this machine is. Each case gets a copy of one prepared data dir (two versions of a small
index on the default backends), so that the models are exported and the index built once.
Every run keeps two of these cases (`EVERY_RUN`); `--full` runs them all (docs/testing.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    DEFAULT_BACKENDS,
    default_backend_data_dir,
    default_backend_env,
    sluice_serving,
)
from tests.retrieve_watch import RetrieveWatch

PACKAGED = "sentence-transformers/all-MiniLM-L6-v2"
DOCS = {
    "pumps.md": "# Pumps\n\nThe impeller of a centrifugal pump moves water through the plant.\n",
    "solar.md": "# Solar power\n\nSolar panels charge the batteries; an inverter makes current.\n",
    "garden.md": "# Garden\n\nWater the tomatoes every morning from the rain tank.\n",
    "bees.md": "# Beekeeping\n\nThe hives are checked for the queen and for mites each spring.\n",
    "bread.md": "# Bread\n\nKnead the sourdough, let it rise overnight and bake it at 240 C.\n",
    "chess.md": "# Chess\n\nCastle early, keep the king safe and bring the rooks to open files.\n",
}
GOLDEN = {
    "pumps.md": "what spins inside a centrifugal pump",
    "solar.md": "how the inverter turns panel power into current",
    "garden.md": "when to water the tomatoes",
    "bees.md": "looking for mites in the hives",
    "bread.md": "baking sourdough bread",
    "chess.md": "when to castle the king",
}
# What an ingest in a case adds (a source of its own, so the template's stays as it is).
EXTRA = {"turbine.md": "# Wind turbine\n\nThe blades of the wind turbine turn a generator.\n"}
QUERY = "centrifugal pump impeller"
COMMANDS = ["ingest", "deployment", "reembed", "rollback", "tune", "eval", "status", "versions"]
EVERY_RUN = {"ingest", "reembed"}
"""Started first, under an API started second, in every run (the order that once left the API
answering nothing); every other case in the full run. A command started under a serving API
runs every time in test_one_deployment.py (ingest, status, versions, retry-failed; a scheduled
run, a re-embed and a rollback)."""
COMMANDS_FIRST = [
    c if c in EVERY_RUN else pytest.param(c, marks=pytest.mark.full) for c in COMMANDS
]


# Imported by every process of a command started first (through PYTHONPATH): the first store it
# opens as owner holds the process there until the release file appears, and says so with a
# file `owner-<pid>` beside it. Patched on import of `index.store.shared`, whichever checkout
# the process runs.
HOLD = """
import importlib.abc, importlib.util, os, sys, time
from pathlib import Path

RELEASE = Path(os.environ["SLUICE_TEST_HOLD_RELEASE"])


def _patch(module):
    store_class = module.SharedEdgeStore
    opened = store_class.__init__
    held = []

    def __init__(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        if self.role == "owner" and not held:
            held.append(True)
            (RELEASE.parent / f"owner-{os.getpid()}").touch()
            while not RELEASE.exists():
                time.sleep(0.05)

    store_class.__init__ = __init__


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "index.store.shared":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())
"""


@dataclass(frozen=True)
class Template:
    """A data dir with `docs__v1` (retired) and `docs__v2` (serving) of DOCS, the golden set
    of DOCS, and a BEIR folder for `sluice eval`."""

    data_dir: Path
    golden: Path
    beir: Path
    hook: Path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, model_exports: Path) -> Template:
    from composition.components import Components
    from config.settings import Settings
    from flows.ingest_flow import run_sync
    from flows.reembed_flow import run_reembed

    root = tmp_path_factory.mktemp("start-orders")
    folder = root / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    golden = root / "golden.jsonl"
    golden.write_text(
        "".join(json.dumps({"query": q, "relevant": [n]}) + "\n" for n, q in GOLDEN.items())
    )
    beir = root / "tiny-beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": name, "title": "", "text": text}) + "\n"
            for name, text in DOCS.items()
        )
    )
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": n, "text": q}) + "\n" for n, q in GOLDEN.items())
    )
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{n}\t{n}\t1\n" for n in GOLDEN)
    )
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD)

    data_dir = default_backend_data_dir(root / "data", model_exports)
    settings = Settings(data_dir=data_dir, **DEFAULT_BACKENDS)
    run_sync(settings, Components(settings).folder_source(folder, None))
    run_reembed(settings, PACKAGED, force=True)  # v2 serving: a previous version to roll back to
    return Template(data_dir, golden, beir, hook)


def _answer(url: str, query: str = QUERY) -> dict[str, Any]:
    answer = httpx.post(f"{url}/retrieve", json={"query": query, "top_k": 3}, timeout=60)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@dataclass(frozen=True)
class _Finished:
    code: int
    stdout: str
    stderr: str

    def report(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.code}\n{self.stdout[-2000:]}\n{self.stderr[-3000:]}"


class _Command:
    """One command started on a case's data dir: a process, or for a deployment run
    `sluice deploy` and the flow run of its deployment that it starts."""

    def __init__(self, case: Case, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.flow_run_id: Any = None
        log = case.root / f"{name}-{len(list(case.root.glob('*.out')))}"
        self._out, self._err = log.with_suffix(".out"), log.with_suffix(".err")
        arguments = ["deploy"] if name == "deployment" else case.arguments(name)
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sluice", *arguments], env=env, stdout=out, stderr=err
            )
        if name == "deployment":
            self.flow_run_id = _start_deployment_run(f"ingest/{case.source}", self.process)

    def state_is_final(self) -> bool:
        """A deployment run's: whether its flow run has finished."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(self.flow_run_id).state
        return state is not None and state.is_final()

    def output(self) -> str:
        return self._out.read_text(errors="replace") + self._err.read_text(errors="replace")

    def finish(self, seconds: float = 300) -> _Finished:
        """Its exit code (a deployment run's: 0 when its flow run completed) and output."""
        try:
            if self.flow_run_id is None:
                self.process.wait(timeout=seconds)
                code, note = self.process.returncode, ""
            else:
                state = _final_state(self.flow_run_id, self.process, seconds)
                code, note = (0 if state.name == "Completed" else 1), f"{state!r}\n"
        finally:
            if self.process.poll() is None:
                self.process.terminate()
                self.process.wait(timeout=60)
        out, err = (f.read_text(errors="replace") for f in (self._out, self._err))
        return _Finished(code, out, note + err)


def _start_deployment_run(name: str, deploy: subprocess.Popen[bytes]) -> Any:
    """A flow run of the deployment, scheduled now: `sluice deploy` starts it as it starts the
    runs its cron schedule makes."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    deadline = time.monotonic() + 180
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.read_deployment_by_name(name)
                break
            except Exception:
                assert deploy.poll() is None, "sluice deploy exited"
                assert time.monotonic() < deadline, f"deployment {name} never appeared"
                time.sleep(0.5)
    flow_run: Any = run_deployment(name, timeout=0)
    return flow_run.id


def _final_state(flow_run_id: Any, deploy: subprocess.Popen[bytes], seconds: float) -> Any:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return state
            assert deploy.poll() is None, "sluice deploy exited before its run finished"
            assert time.monotonic() < deadline, f"the deployment run is still {state!r}"
            time.sleep(0.5)


class Case:
    """A copy of the template (its owner's lock, key and socket left out) and the commands'
    arguments on it."""

    def __init__(self, template: Template, root: Path) -> None:
        from prefect.settings import get_current_settings

        self.template = template
        self.root = root
        self.data_dir = root / "data"
        shutil.copytree(
            template.data_dir,
            self.data_dir,
            symlinks=True,
            ignore=shutil.ignore_patterns("owner.*"),
        )
        self.extra = root / "extra"
        self.extra.mkdir()
        for name, text in EXTRA.items():
            (self.extra / name).write_text(text)
        self.source = f"extra-{root.name}"
        config = root / "sluice.toml"
        config.write_text(
            f'[[sources]]\ntype = "local"\nname = "{self.source}"\npath = "{self.extra}"\n'
            'schedule = "0 3 * * *"\n'
        )
        self.env = default_backend_env(os.environ) | {
            "SLUICE_DATA_DIR": str(self.data_dir),
            "SLUICE_CONFIG_FILE": str(config),
            "PREFECT_API_URL": str(get_current_settings().api.url),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
        self.release = root / "hold" / "release"
        self.release.parent.mkdir()

    def arguments(self, name: str) -> list[str]:
        return {
            "ingest": ["ingest", str(self.extra), "--json"],
            "reembed": ["reembed", "--model", PACKAGED, "--force", "--json"],
            "rollback": ["rollback", "--json"],
            "tune": ["tune", "--golden", str(self.template.golden), "--folds", "3", "--json"],
            "eval": ["eval", str(self.template.beir), "--out", str(self.root / "eval"), "--json"],
            "status": ["status", "--json"],
            "versions": ["versions", "--json"],
        }[name]

    def start(self, name: str, held: bool = False) -> _Command:
        """`name` started; `held`: it stops, as owner, right after it opens the store, until
        `release()`."""
        env = self.env
        if held:
            hook = str(self.template.hook)
            path = os.pathsep.join(filter(None, [hook, env.get("PYTHONPATH")]))
            env = env | {"PYTHONPATH": path, "SLUICE_TEST_HOLD_RELEASE": str(self.release)}
        return _Command(self, name, env)

    def wait_until_owned(self, command: _Command, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while not any(self.release.parent.glob("owner-*")):
            if command.process.poll() is not None:
                raise AssertionError(f"{command.name} exited first:\n{command.output()[-3000:]}")
            assert time.monotonic() < deadline, f"{command.name} never opened the store"
            time.sleep(0.1)

    def release_owner(self) -> None:
        self.release.touch()


@pytest.fixture
def case(template: Template, tmp_path: Path, prefect_server: None) -> Case:
    return Case(template, tmp_path)


def _check_done(name: str, finished: _Finished, url: str) -> None:
    """`name` exited 0 and did its work, as the API sees it."""
    assert finished.code == 0, finished
    answered = _answer(url)["index"]
    if name in ("ingest", "deployment"):
        assert _answer(url, "wind turbine blades")["hits"][0]["uri"].endswith("turbine.md")
        if name == "ingest":
            assert finished.report()["new"] == 1
        return
    report = finished.report()
    if name == "reembed":
        assert report["outcome"] == "switched"
        assert answered["collection"] == "docs__v3"
    elif name == "rollback":
        assert report["serving"] == "docs__v1" and answered["collection"] == "docs__v1"
    elif name == "tune":
        assert answered["tuned_at"], answered
    elif name == "eval":
        assert set(report["modes"]) >= {"bm25", "dense", "hybrid"}
    elif name == "status":
        assert report["indexes"]["docs"]["documents"] >= len(DOCS)
    elif name == "versions":
        assert [v["state"] for v in report["versions"]] == ["retired", "serving"]


@pytest.mark.full
@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_started_while_the_api_owns_the_shards(case: Case, name: str) -> None:
    with sluice_serving(case.env, ready_seconds=120) as (url, _):
        watch = RetrieveWatch(url, {"query": QUERY, "top_k": 3}, expect_hits=True, ready=True)
        try:
            watch.wait_for(3)
            _check_done(name, case.start(name).finish(), url)
            watch.wait_for(3)
        finally:
            watch.stop()
    assert watch.problems == []


@pytest.mark.parametrize("name", COMMANDS_FIRST)
def test_the_api_started_while_a_command_owns_the_shards(case: Case, name: str) -> None:
    command = case.start(name, held=True)
    try:
        case.wait_until_owned(command)
        with sluice_serving(case.env, ready_seconds=120) as (url, _):
            watch = RetrieveWatch(url, {"query": QUERY, "top_k": 3}, expect_hits=True, ready=True)
            try:
                watch.wait_for(5)  # as the command's client
                case.release_owner()
                finished = command.finish()
                watch.wait_for(5)  # the command is gone: the API owns the shards now
                _check_done(name, finished, url)
            finally:
                watch.stop()
    finally:
        case.release_owner()
        if command.process.poll() is None:
            command.process.kill()
    assert watch.problems == []


@pytest.mark.full  # every run: test_owner_resilience.py's two APIs, one of them stopped
def test_two_apis_on_one_data_dir_both_answer_and_the_second_outlives_the_first(
    case: Case,
) -> None:
    with sluice_serving(case.env, ready_seconds=120) as (first_url, first):
        first_watch = RetrieveWatch(
            first_url, {"query": QUERY, "top_k": 3}, expect_hits=True, ready=True
        )
        try:
            with sluice_serving(case.env, ready_seconds=120) as (second_url, _):
                second_watch = RetrieveWatch(
                    second_url, {"query": QUERY, "top_k": 3}, expect_hits=True, ready=True
                )
                try:
                    first_watch.wait_for(5)
                    second_watch.wait_for(5)
                    first_watch.stop()
                    first.terminate()  # the owner restarts: the second API takes over
                    first.wait(timeout=60)
                    second_watch.wait_for(10)
                finally:
                    second_watch.stop()
        finally:
            first_watch.stop()
    assert first_watch.problems == [] and second_watch.problems == []


@pytest.mark.full
def test_quick_commands_and_a_second_ingest_while_an_ingest_owns_the_shards(case: Case) -> None:
    ingest = case.start("ingest", held=True)
    try:
        case.wait_until_owned(ingest)
        for name in ("status", "versions", "tune", "eval"):
            finished = case.start(name).finish()
            assert finished.code == 0, f"{name}: {finished}"
        second = case.start("ingest").finish()
        # Runs that write one index never overlap: the second says so (README, exit codes).
        assert second.code == 2 and "another ingest run into index 'docs'" in second.stderr, second
        rollback = case.start("rollback")  # waits for the ingest's run lock
        time.sleep(2)
        assert rollback.process.poll() is None, rollback.output()[-3000:]
        case.release_owner()
        first = ingest.finish()
        assert first.code == 0 and first.report()["new"] == 1, first
        rolled = rollback.finish()
        assert rolled.code == 0 and rolled.report()["serving"] == "docs__v1", rolled
    finally:
        case.release_owner()
        if ingest.process.poll() is None:
            ingest.process.kill()
    with sluice_serving(case.env, ready_seconds=120) as (url, _):
        answered = _answer(url)["index"]
        assert answered["collection"] == "docs__v1" and answered["tuned_at"] is None
        assert _answer(url, "wind turbine blades")["hits"][0]["uri"].endswith("turbine.md")


RUN_LOCK_HOLDERS = {"ingest", "deployment", "rollback", "reembed"}
"""Commands that may hold the index's run lock when they open the store; an ingest (or a
deployment's run) started meanwhile refuses with exit 2 and says why (README, exit codes)."""


@pytest.mark.full
@pytest.mark.parametrize(
    ("first", "second"),
    [(first, second) for first in COMMANDS for second in COMMANDS],
    ids=lambda name: str(name),
)
def test_every_pair_of_commands_in_either_order(case: Case, first: str, second: str) -> None:
    """`first` holds the shards as owner while `second` starts as its client; then `first` goes
    on. Both finish (or the second refuses an overlapping run, saying so), and an API started
    afterwards answers from what they left."""
    held = case.start(first, held=True)
    later = None
    try:
        case.wait_until_owned(held)
        later = case.start(second)
        deadline = time.monotonic() + 30  # long enough to reach the owner or a lock it waits on
        while later.process.poll() is None and time.monotonic() < deadline:
            if later.flow_run_id is not None and later.state_is_final():
                break
            time.sleep(0.2)
        case.release_owner()
        done_first, done_second = held.finish(), later.finish()
    finally:
        case.release_owner()
        for command in (held, later):
            if command is not None and command.process.poll() is None:
                command.process.kill()
    done = {"first": (first, done_first), "second": (second, done_second)}
    for order, (name, finished) in done.items():
        if finished.code == 0:
            continue
        other = done["second" if order == "first" else "first"]
        # A run refused while another writes the index; or, of two rollbacks, the one that
        # found the other had already gone back to the oldest version kept.
        overlap = "another ingest run into index 'docs'" in f"{finished}" and (
            order == "second" and first in RUN_LOCK_HOLDERS and name in ("ingest", "deployment")
        )
        nothing_left = "no version to roll back to" in f"{finished}" and (
            name == other[0] == "rollback" and other[1].code == 0
        )
        refused = finished.code == 2 or name == "deployment"  # a flow run: failed, not exit 2
        assert refused and (overlap or nothing_left), f"{name} ({order}): {finished}"
    with sluice_serving(case.env, ready_seconds=120) as (url, _):
        assert _answer(url)["hits"], "the API answers nothing after the pair"
