"""agx's per-repository state folder `.agx/`, kept out of git via .git/info/exclude."""

from __future__ import annotations

import subprocess
from pathlib import Path

STATE_DIR_NAME = ".agx"


def find_repo_root(start: Path | None = None) -> Path | None:
    """The top of the git work tree containing `start` (cwd by default), or None."""
    start = (start or Path.cwd()).resolve()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def _git_dir(repo: Path) -> Path | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--git-common-dir"], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    p = Path(out.stdout.strip())
    return p if p.is_absolute() else (repo / p).resolve()


def ensure_state_dir(repo: Path) -> Path:
    """Create `.agx/` in `repo` and make git ignore it without touching tracked files."""
    state = Path(repo) / STATE_DIR_NAME
    state.mkdir(parents=True, exist_ok=True)
    git_dir = _git_dir(Path(repo))
    if git_dir is not None:
        exclude = git_dir / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        existing = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        lines = {line.strip() for line in existing.splitlines()}
        if f"/{STATE_DIR_NAME}/" not in lines and f"{STATE_DIR_NAME}/" not in lines:
            with open(exclude, "a", encoding="utf-8") as fh:
                if existing and not existing.endswith("\n"):
                    fh.write("\n")
                fh.write(f"# agx state (session logs, plans)\n/{STATE_DIR_NAME}/\n")
    return state
