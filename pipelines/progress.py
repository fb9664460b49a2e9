"""A process-local progress listener: the CLI draws a bar while a flow runs in-process.

Flow parameters must be serialisable, so a callback cannot be one; the entry point registers a
listener here instead and flows report through `report_progress`.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]
"""(stage, done, total)"""

_listener: ProgressCallback | None = None


def no_progress(stage: str, done: int, total: int) -> None:
    return None


def set_progress_listener(listener: ProgressCallback | None) -> None:
    global _listener
    _listener = listener


def report_progress(stage: str, done: int, total: int) -> None:
    if _listener is not None:
        _listener(stage, done, total)
