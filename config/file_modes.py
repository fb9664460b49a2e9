"""Files and folders that are their user's alone (group and others get nothing)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

OWNER_ONLY = 0o077
"""Permission bits no file or folder of Sluice's grants: group and others get nothing."""


def tighten(path: Path) -> int:
    """1 where group or other bits were taken off `path`; links and what this user may not
    change (another user's file) are left as they are."""
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not mode & OWNER_ONLY:
            return 0
        path.chmod(stat.S_IMODE(mode) & ~OWNER_ONLY)
    except OSError:
        return 0
    return 1


def tighten_tree(folder: Path) -> int:
    """`tighten` on `folder` and everything in it; how many paths changed."""
    tightened = 0
    for parent, folders, files in os.walk(folder, topdown=False):
        for name in (*files, *folders):
            tightened += tighten(Path(parent) / name)
    return tightened + tighten(folder)
