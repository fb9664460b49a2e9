"""A newcomer's first hour, literally: the README's two commands in a fresh clone, then the
follow-up commands the first one prints, each in a new shell; fails at the first step that fails.

    .venv/bin/python bench/newcomer.py [--skip-tests] [--keep DIR]

1. `git clone` of the committed HEAD into a new folder (nothing of this checkout's: no `.venv`).
2. The README's first command (`bash scripts/demo.sh`), as its first code block shows it, until
   it prints how to query it and `/ready` answers.
3. Every command it printed (`curl …`, `.venv/bin/sluice query …`), each in a new `bash` with
   only the login environment (no variable the demo set), in the clone; each must exit 0 and
   answer with hits.
4. `sluice status` and `sluice server status` in a new shell: the demo's index and its Prefect
   server are what a later command finds; `git status` shows nothing new.
5. The demo stopped (Ctrl-C), `sluice server stop`: no process of the clone is left.
6. The README's second command (`bash scripts/test.sh`), unless `--skip-tests` (CI runs it).

Prints each step with its time and output; exit 1 at the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {text}", flush=True)


def fail(text: str) -> None:
    say(f"FAILED: {text}")
    sys.exit(1)


def readme_commands() -> list[str]:
    """The commands of the README's first code block (comments left out)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, re.S)
    if block is None:
        fail("the README has no '## Two commands' section with a bash block")
    assert block is not None
    return [line for line in block[1].splitlines() if line.strip() and not line.startswith("#")]


def clean_env() -> dict[str, str]:
    """A new login shell's environment: none of Sluice's or Prefect's variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PREFECT_"))}


def new_shell(command: str, clone: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    say(f"$ {command}")
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in (done.stdout + done.stderr).splitlines()[-15:]:
        print(f"    {line}")
    if done.returncode != 0:
        fail(f"{command!r} exited {done.returncode}")
    return done


def processes_of(clone: Path) -> list[str]:
    """Command lines of running processes that name the clone (a server, a worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(clone) in argv:
            found.append(f"{entry.name} {argv.strip()}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-tests", action="store_true", help="Leave out the second command.")
    parser.add_argument("--keep", type=Path, help="Clone here and keep it (default: a temp dir).")
    args = parser.parse_args()

    first, second = readme_commands()[:2]
    clone = (args.keep or Path(tempfile.mkdtemp(prefix="sluice-newcomer-"))).resolve()
    if clone.exists() and any(clone.iterdir()):
        fail(f"{clone} is not empty")
    say(f"git clone into {clone}")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)

    say(f"$ {first}   (the README's first command; running until it serves)")
    log = (clone.parent / f"{clone.name}-demo.log").open("w+")
    demo = subprocess.Popen(
        ["bash", "-c", first],
        cwd=clone,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        printed = wait_for_demo(demo, Path(log.name))
        follow_up = [line.strip() for line in printed if line.strip().startswith(("curl", ".venv"))]
        if not follow_up:
            fail("the demo printed no command to try")
        for command in follow_up:
            done = new_shell(command, clone)
            if command.startswith("curl"):
                if not json.loads(done.stdout)["hits"]:
                    fail("the printed curl got no hits")
            elif "no hits" in done.stdout:
                fail(f"{command!r} found no hits")
        status = json.loads(new_shell(".venv/bin/sluice status --json", clone).stdout)
        if not status["indexes"].get("docs", {}).get("points"):
            fail("sluice status in a new shell does not show the demo's index")
        server = json.loads(new_shell(".venv/bin/sluice server status --json", clone).stdout)
        if not server["running"]:
            fail("sluice server status does not show the demo's Prefect server")
        untracked = new_shell("git status --porcelain", clone).stdout.strip()
        if untracked:
            fail(f"git status shows what the demo made:\n{untracked}")
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the demo's terminal
        demo.wait(timeout=60)
    say("processes naming the clone after the demo stopped:")
    for line in processes_of(clone) or ["(none)"]:
        print(f"    {line[:200]}")
    new_shell(".venv/bin/sluice server stop", clone)
    time.sleep(1)
    left = processes_of(clone)
    say(f"processes naming the clone after `sluice server stop`: {len(left)}")
    for line in left:
        print(f"    {line[:200]}")
    if left:
        fail("processes outlived the demo and `sluice server stop`")

    if not args.skip_tests:
        new_shell(second, clone, timeout=90 * 60)
    say("every step passed")
    if args.keep is None:
        shutil.rmtree(clone, ignore_errors=True)


def wait_for_demo(demo: subprocess.Popen[bytes], log: Path, seconds: float = 1800) -> list[str]:
    """The lines the demo printed after "Query it", once its API is ready."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            print(log.read_text()[-3000:])
            fail(f"the demo exited with {demo.returncode}")
        text = log.read_text(errors="replace")
        if "Query it" in text:
            port = re.search(r"http://127\.0\.0\.1:(\d+)/retrieve", text)
            if port and _ready(int(port[1])):
                lines = text.split("Query it", 1)[1].splitlines()
                say("the demo serves; it printed:")
                for line in text.splitlines():
                    if line.startswith(("install [", "Data dir")) or "Query it" in line:
                        print(f"    {line}")
                for line in lines[1:6]:
                    print(f"    {line}")
                return lines
        time.sleep(2)
    fail(f"the demo did not serve within {seconds:.0f} s")
    return []


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
