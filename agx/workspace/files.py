"""Writing files atomically, as agx's tasks, git isolation and the shell's frame cache need.

A file is written to a sibling temp file (`.<name>` + TMP_SUFFIX) and renamed over the target,
so a reader never sees half a file. Parallel tasks share one worktree, so change tracking must
know the temp files are agx's own in-flight writes (see git_isolation's committer and
workspace.worktree_state.dirty_state).
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_SUFFIX = ".agx-tmp"


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` through a temp file; `mode` None keeps the file's mode (new: 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:  # a full disk, say: leave no half-written temp file behind
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
