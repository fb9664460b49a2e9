"""Process-wide defaults an entry point sets before Prefect, transformers or unstructured load.

Library code never reads the environment; entry points (the CLI, `python -m`, tests) call
`prepare_process` once, and anything the user already exported wins.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from config.file_modes import OWNER_ONLY, tighten_tree

OFFLINE_DEFAULTS = {
    # No model hub and no analytics: models come from local paths or packages.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    # Prefect: local SQLite server started on demand, given time to start on small machines.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # Each run's log in Prefect holds INFO and up, Sluice's own `sluice.*` loggers included;
    # outside a flow run (tests, the API) those records are not sent anywhere.
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "sluice",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def prepare_process(data_dir: Path, hub_offline: bool = True, console_level: str = "INFO") -> int:
    """`console_level`: the least level of Prefect's log records printed to this process's
    stderr; the run logs Prefect keeps are not affected. Returns how many files and folders of
    an existing data dir were tightened to its owner (`keep_to_owner`), for a note."""
    tightened = keep_to_owner(data_dir)
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", console_level)
    for key, value in OFFLINE_DEFAULTS.items():
        if key.startswith(("HF_", "TRANSFORMERS_")) and not hub_offline:
            continue
        os.environ.setdefault(key, value)
    prefect_home = Path(
        os.environ.setdefault("PREFECT_HOME", str((data_dir / "prefect").resolve()))
    )
    prefect_home.mkdir(parents=True, exist_ok=True)
    logging.getLogger("sluice").setLevel(logging.INFO)
    return tightened


def keep_to_owner(data_dir: Path) -> int:
    """Everything this process creates from now on, and the processes it starts (parse workers,
    the data dir's Prefect server), is its user's alone: the umask gains 077. The data dir is
    created 0700; an existing one that group or others may enter is tightened, with everything
    in it, and how many paths changed is returned. A data dir already closed to others is not
    walked: nobody else can reach what is inside it."""
    os.umask(os.umask(OWNER_ONLY) | OWNER_ONLY)
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)
        return 0
    if data_dir.stat().st_mode & OWNER_ONLY == 0:
        return 0
    return tighten_tree(data_dir)


def data_dir_id(data_dir: Path) -> str:
    """An id made once per data dir (`embedded-<uuid>`), kept in `deployment-id`: the API
    reports it, so a client can tell which data it asked. Two processes making it at once read
    the same one: the first to link its file into place wins."""
    marker = data_dir / "deployment-id"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        fresh = marker.with_suffix(f".{uuid.uuid4().hex}")
        fresh.write_text(f"embedded-{uuid.uuid4()}\n")
        try:
            os.link(fresh, marker)
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    return marker.read_text().strip()
