"""A real PostgreSQL server for the tests, started from the machine's own binaries.

The install script installs Debian's `postgresql` where it can (root with apt); where no
`pg_ctl` is found, the tests that need a server skip with the reason. PostgreSQL refuses to
run as root, so there it runs as the `postgres` user the package makes, in a folder of its own.
Durability is off (`fsync=off`): these servers hold only test data.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def why_no_server() -> str | None:
    """None where a server can be started here; else why not."""
    if postgres_bin() is None:
        return "no PostgreSQL server binaries (pg_ctl); scripts/install.sh installs them as root"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root with no 'postgres' user to run PostgreSQL as"
    return None


@contextmanager
def postgres_server(port: int) -> Iterator[str]:
    """A started server on 127.0.0.1:`port`, trusting local connections; yields its URL."""
    bin_dir = postgres_bin()
    assert bin_dir is not None
    home = Path(tempfile.mkdtemp(prefix="sluice-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = home / "data"

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
        "--no-sync")  # fmt: skip
    options = (
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"), "-w",
        "start")  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


def new_database(server_url: str) -> str:
    """A fresh, empty database on the server: each test its own."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"
