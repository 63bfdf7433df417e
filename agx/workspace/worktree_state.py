"""What a working tree holds right now, read from git: its uncommitted changes (to tell what a
command changed) and its files (for `search`).

Plain `git` by subprocess, not GitPython: these run around every command a task runs, and a
GitPython Repo costs more than the call itself; the output is NUL-separated bytes decoded with
surrogateescape, so any file name round-trips.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agx.workspace.files import TMP_SUFFIX


def dirty_state(workdir: Path) -> dict[str, tuple[int, int] | None] | None:
    """Changed-but-uncommitted paths with a stat signature (None: deleted); None outside git."""
    out = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "-z", "--untracked-files=all", "--no-renames"],
                         cwd=workdir, capture_output=True)
    if out.returncode != 0:
        return None
    state: dict[str, tuple[int, int] | None] = {}
    for entry in out.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if len(entry) < 4:
            continue
        path = entry[3:]
        if path.endswith(TMP_SUFFIX):  # another task's atomic write in flight, not this task's change
            continue
        try:
            st = os.lstat(workdir / path)
            state[path] = (st.st_mtime_ns, st.st_size)
        except OSError:
            state[path] = None
    return state


def changed_between(before: dict | None, after: dict | None) -> list[str] | None:
    """Paths whose uncommitted state differs between two `dirty_state`s (None: unknown)."""
    if before is None or after is None:
        return None
    return sorted(p for p in set(before) | set(after) if before.get(p, "clean") != after.get(p, "clean"))


def candidate_files(workdir: Path, sub: str | None) -> list[str]:
    """Tracked plus untracked-not-ignored files (so files made by earlier tasks are found)."""
    cmd = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    if sub:
        cmd += ["--", sub]
    out = subprocess.run(cmd, cwd=workdir, capture_output=True)
    if out.returncode == 0:
        return sorted({p for p in out.stdout.decode("utf-8", "replace").split("\0") if p})
    # Not a git checkout: walk the folder, skipping dot-directories.
    base = workdir / sub if sub else workdir
    if base.is_file():
        return [str(base.relative_to(workdir))]
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            found.append(str((Path(dirpath) / name).relative_to(workdir)))
    return sorted(found)
