"""Reads what the git pane shows. Blocking (git through agx/workspace/gitread.py): call from a thread worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agx.workspace import gitread


@dataclass(frozen=True)
class GitSnapshot:
    branch: str = ""
    head: str = ""
    status: str = ""
    diff: str = ""
    diff_title: str = ""
    error: str | None = None


def _git(repo: Path, *args: str, timeout: float = 10) -> str:
    try:
        return gitread.run(repo, *args, timeout=timeout)  # the workspace layer's git (GitPython)
    except gitread.GitReadError as exc:
        raise RuntimeError(str(exc) or f"git {' '.join(args)} failed") from None


def _git_maybe(repo: Path, *args: str) -> str:
    try:
        return _git(repo, *args).strip()
    except RuntimeError:
        return ""


def snapshot(repo: Path | None, diff_args: tuple[str, ...] | None = None, diff_title: str = "",
             cwd: Path | None = None) -> GitSnapshot:
    """Branch, short status and a diff (`git <diff_args>`; the working tree's diff when None).

    `cwd` lets the diff run in a plan's worktree while branch/status describe the user's repo."""
    if repo is None:
        return GitSnapshot(error="not a git repository — chat only")
    try:
        branch = _git_maybe(repo, "symbolic-ref", "-q", "--short", "HEAD") or "(detached)"
        try:
            head = _git(repo, "rev-parse", "HEAD").strip()
        except RuntimeError:
            head = ""  # no commits yet
        status = _git(repo, "status", "--short", "--untracked-files=normal")
        if diff_args is None:
            diff = _git(repo, "diff", "HEAD") if head else ""
            title = diff_title or "working tree vs HEAD"
        else:
            diff = _git(cwd or repo, *diff_args)
            title = diff_title
        return GitSnapshot(branch=branch, head=head, status=status, diff=diff, diff_title=title)
    except (RuntimeError, OSError) as exc:
        return GitSnapshot(error=f"git: {exc}")
