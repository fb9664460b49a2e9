"""A Prefect server of the data dir's own, started on first use and reused while it is busy.

Without `PREFECT_API_URL`, Prefect starts a temporary server for every process: ~8 s of a
command that may have nothing to do, and its record gone with it. The CLI starts this one
instead: Prefect's own server app (SQLite under `PREFECT_HOME`, UI included) on a free
loopback port, detached, found again through `server.json` beside its database, and
stopped by itself after `idle_s` without a request once no command that uses it runs (or by
`sluice server stop`). Two data dirs get two servers; its command line names its
`PREFECT_HOME`, inside the data dir, so a process list tells whose it is.

This module imports no Prefect until the server process runs, so a command can point
`PREFECT_API_URL` at the server before Prefect reads its settings.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from composition.prefect_runs import STATE_FILE, running_server

START_TIMEOUT_S = 180.0


def ensure_local_server(home: Path, idle_s: float) -> str:
    """The API URL of the data dir's server, started if none answers; one start at a time."""
    from filelock import FileLock

    home.mkdir(parents=True, exist_ok=True)
    with FileLock(home / "server.lock", timeout=START_TIMEOUT_S):
        url = running_server(home)
        if url:
            return url
        return _start(home, idle_s)


def _start(home: Path, idle_s: float) -> str:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("ab")
    command = [sys.executable, "-m", "flows.local_server", str(port), str(idle_s), str(home)]
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # outlives the command that started it; Ctrl-C stays there
        cwd=Path(__file__).resolve().parents[1],
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the local Prefect server exited with code {process.returncode}; "
                f"see {home / 'server.log'}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                state = {
                    "url": url,
                    "pid": process.pid,
                    "started_at": time.time(),
                    "idle_s": idle_s,
                }
                (home / STATE_FILE).write_text(json.dumps(state))
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"the local Prefect server did not start in {START_TIMEOUT_S:.0f} s")


def recorded_server(home: Path) -> dict[str, Any] | None:
    """What `server.json` says of the data dir's server (url, pid, started_at, idle_s), and
    whether it answers now (`answers`); None when none was ever started or it is gone."""
    try:
        state: dict[str, Any] = json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not _is_ours(state.get("pid"), home):
        return None
    state["answers"] = running_server(home) is not None
    return state


def stop_local_server(home: Path, timeout_s: float = 30.0) -> dict[str, Any] | None:
    """Stop the data dir's server (SIGTERM, then SIGKILL after `timeout_s`); what it was, or
    None when none was running. Holds the start lock, so no command starts one meanwhile."""
    import signal

    from filelock import FileLock

    with FileLock(home / "server.lock", timeout=START_TIMEOUT_S):
        state = recorded_server(home)
        if state is None:
            (home / STATE_FILE).unlink(missing_ok=True)
            return None
        pid = int(state["pid"])
        os.kill(pid, signal.SIGTERM)  # uvicorn finishes the requests it holds, then exits
        deadline = time.monotonic() + timeout_s
        while _is_ours(pid, home):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        # An exiting process drops its command line before it is gone: wait out the teardown
        # (bounded, so a reused pid cannot hold us) so that "stopped" means gone.
        teardown = time.monotonic() + 5.0
        while _running(pid) and time.monotonic() < teardown:
            time.sleep(0.05)
        (home / STATE_FILE).unlink(missing_ok=True)
        return state


def _running(pid: int) -> bool:
    """Alive and not a zombie (Linux's /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _is_ours(pid: object, home: Path) -> bool:
    """`pid` is alive (not a zombie) and is this data dir's server: a recorded pid may have
    been reused by another process since (Linux's /proc)."""
    if not isinstance(pid, int):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not _running(pid):
        return False
    return b"flows.local_server" in argv and os.fsencode(home) in argv


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _LastRequest:
    """ASGI middleware noting when the app last answered; the idle watchdog reads it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.at = time.monotonic()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.at = time.monotonic()
        await self.app(scope, receive, send)


CLIENTS = "clients"
"""A folder of `<pid>` files beside the database: the commands using the server now."""


def register_client(home: Path) -> None:
    """Keeps the server up while this process lives, however long it goes without a request
    (a model loading, one long task): the watchdog stops only a server idle and unused."""
    import atexit

    folder = home / CLIENTS
    folder.mkdir(exist_ok=True)
    mine = folder / str(os.getpid())
    mine.write_text(_start_time(os.getpid()) or "")
    atexit.register(mine.unlink, missing_ok=True)


def _start_time(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot), so that a reused pid is not taken for it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _clients_alive(home: Path) -> bool:
    """Whether a registered command still runs; the files of those gone are removed."""
    alive = False
    for entry in (home / CLIENTS).glob("*"):
        started = _start_time(int(entry.name)) if entry.name.isdigit() else None
        try:
            if started is not None and started == entry.read_text():
                alive = True
                continue
            entry.unlink()
        except OSError:
            continue
    return alive


def serve(port: int, idle_s: float, home: Path) -> None:
    """Prefect's server app on loopback until `idle_s` pass without a request and with no
    registered command alive."""
    import uvicorn
    from prefect.server.api.server import create_app

    app = _LastRequest(create_app())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )

    def watchdog() -> None:
        while not server.should_exit:
            time.sleep(min(5.0, idle_s / 4))
            if time.monotonic() - app.at > idle_s and not _clients_alive(home):
                server.should_exit = True

    threading.Thread(target=watchdog, daemon=True).start()
    server.run()


if __name__ == "__main__":
    serve(int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3]))
