"""Reading a repository's state (files, status, diffs, branch) for prompts and the git pane.

Through GitPython (`Repo.git`), so every git call agx makes lives in the workspace layer. Plain
`git` by subprocess stays only in git_isolation.py, where GitPython cannot do the job: snapshots
through a temporary index (GIT_INDEX_FILE per call) and worktree management.
"""

from __future__ import annotations

from pathlib import Path


class GitReadError(Exception):
    """git refused (not a repository, no commits, a bad revision); the message says why."""


def _repo(path: Path | str):
    import git  # GitPython: imported on first use (about 0.1 s), never at the shell's start

    try:
        return git.Repo(str(path), search_parent_directories=False)
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as exc:
        raise GitReadError(f"not a git repository: {exc}") from None


def run(path: Path | str, *args: str, timeout: float = 10) -> str:
    """`git ARGS` in `path`; GitReadError with git's message when it fails."""
    import git

    repo = _repo(path)
    try:
        return repo.git.execute(["git", *args], kill_after_timeout=timeout, stdout_as_string=True,
                                strip_newline_in_stdout=False)
    except git.exc.GitCommandError as exc:
        raise GitReadError((exc.stderr or str(exc)).strip().removeprefix("stderr: ").strip("'").strip()) from None


def output_or_none(path: Path | str, *args: str, timeout: float = 10) -> str | None:
    try:
        return run(path, *args, timeout=timeout)
    except (GitReadError, OSError):
        return None


def init(path: Path | str, initial_branch: str | None = None) -> None:
    """`git init` (the shell offers it when started outside a repository)."""
    import git

    try:
        git.Repo.init(str(path), **({"initial_branch": initial_branch} if initial_branch else {}))
    except (git.exc.GitError, OSError) as exc:
        raise GitReadError(str(exc)) from None
