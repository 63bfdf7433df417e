"""Git isolation: plans run in their own worktree; the user's files and index are untouched.

Life of a plan's changes:

1. `snapshot()` — a commit of exactly what the user sees (HEAD + staged + unstaged +
   untracked-but-not-ignored files), built with a *temporary* index (GIT_INDEX_FILE) so the
   user's index is never written. The commit is referenced by nothing but the plan branch.
2. `create_worktree()` — `git worktree add .agx/worktrees/<id> -b agx/<id> <snapshot>`;
   tasks run there, and each task that changed files becomes one commit on `agx/<id>`
   (`WorktreeCommitter`, serialised by a lock).
3. `apply_plan()` — the diff snapshot..branch goes into the user's checkout. Every file it
   touches must still hold what the snapshot saw, or apply refuses (the user changed it
   meanwhile). When the touched files had no uncommitted changes, the result is one commit on
   the user's branch; otherwise the files are written and left uncommitted (a commit would
   sweep the user's own uncommitted edits in with agx's). What was applied is recorded.
4. `undo_apply()` — reverts the last apply, refusing (like Aider) when a touched file changed
   since, or, for a commit, when HEAD has moved past it.
5. `discard_plan()` — removes the worktree and the branch.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agx.workspace.files import TMP_SUFFIX, atomic_write
from agx.workspace.state_dir import ensure_state_dir

AGX_IDENTITY = ("agx", "agx@localhost")


class GitError(Exception):
    """A git operation failed or was refused; the message is for the user."""


def git(cwd: Path, *args: str, env: dict | None = None, input: bytes | None = None, check: bool = True) -> str:
    """Run git, returning stdout (text, stripped of one trailing newline)."""
    full_env = None
    if env:
        full_env = {**os.environ, **env}
    proc = subprocess.run(["git", *args], cwd=cwd, env=full_env, input=input, capture_output=True)
    if check and proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip() or proc.stdout.decode("utf-8", "replace").strip()
        raise GitError(f"git {' '.join(args[:2])}: {msg}")
    out = proc.stdout.decode("utf-8", "replace")
    return out[:-1] if out.endswith("\n") else out


def git_ok(cwd: Path, *args: str, env: dict | None = None) -> bool:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True).returncode == 0


def _identity_args(repo: Path) -> list[str]:
    """`-c user.name=agx ...` when the repository has no identity (commits would fail)."""
    have_name = git_ok(repo, "config", "user.name")
    have_email = git_ok(repo, "config", "user.email")
    args = []
    if not have_name:
        args += ["-c", f"user.name={AGX_IDENTITY[0]}"]
    if not have_email:
        args += ["-c", f"user.email={AGX_IDENTITY[1]}"]
    # agx's commits are bookkeeping: no signing prompts, no user hooks.
    return args + ["-c", "commit.gpgsign=false"]


@dataclass
class Snapshot:
    commit: str
    head: str | None  # None in a repository without commits
    branch: str | None  # the user's branch name, None when detached


class GitIsolation:
    def __init__(self, repo: Path):
        repo = Path(repo)
        top = git(repo, "rev-parse", "--show-toplevel", check=False)
        if not top:
            raise GitError(f"{repo} is not inside a git repository (agx runs plans in a git worktree; run `git init`)")
        self.repo = Path(top)
        self.state_dir = ensure_state_dir(self.repo)
        self.git_dir = Path(git(self.repo, "rev-parse", "--absolute-git-dir"))
        self._ident = _identity_args(self.repo)

    # -- names -----------------------------------------------------------------------------
    @staticmethod
    def branch_name(plan_id: str) -> str:
        return f"agx/{plan_id}"

    def worktree_path(self, plan_id: str) -> Path:
        return self.state_dir / "worktrees" / plan_id

    def head(self) -> str | None:
        out = git(self.repo, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
        return out or None

    # -- 1. snapshot -----------------------------------------------------------------------
    def snapshot(self, message: str = "agx snapshot") -> Snapshot:
        """Commit what the user sees without touching their index or files."""
        head = self.head()
        branch = git(self.repo, "symbolic-ref", "-q", "--short", "HEAD", check=False) or None
        with tempfile.TemporaryDirectory(prefix="agx-index-") as tmp:
            index = Path(tmp) / "index"
            real_index = self.git_dir / "index"
            if real_index.exists():
                # Starting from a copy keeps git's stat cache: only changed files are re-hashed.
                shutil.copyfile(real_index, index)
            env = {"GIT_INDEX_FILE": str(index)}
            if not real_index.exists() and head:
                git(self.repo, "read-tree", head, env=env)
            git(self.repo, "add", "-A", "--", ".", env=env)
            tree = git(self.repo, "write-tree", env=env)
        parents = ["-p", head] if head else []
        commit = git(self.repo, *self._ident, "commit-tree", tree, *parents, "-m", message)
        return Snapshot(commit=commit, head=head, branch=branch)

    # -- 2. worktree -----------------------------------------------------------------------
    def create_worktree(self, plan_id: str, snapshot: Snapshot) -> Path:
        path = self.worktree_path(plan_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        git(self.repo, "worktree", "add", "-q", "-b", self.branch_name(plan_id), str(path), snapshot.commit)
        return path

    def committer(self, worktree: Path) -> "WorktreeCommitter":
        return WorktreeCommitter(Path(worktree), self._ident)

    def branch_tip(self, plan_id: str) -> str | None:
        return git(self.repo, "rev-parse", "--verify", "-q", f"refs/heads/{self.branch_name(plan_id)}", check=False) or None

    def changed_paths(self, base: str, tip: str) -> list[tuple[str, str]]:
        """(status letter, path) for every file that differs between two commits."""
        out = git(self.repo, "diff", "--name-status", "-z", "--no-renames", base, tip)
        parts = [p for p in out.split("\0") if p]
        return [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]

    def commits_on_branch(self, plan_id: str, base: str) -> list[str]:
        tip = self.branch_tip(plan_id)
        if not tip:
            return []
        out = git(self.repo, "rev-list", "--reverse", f"{base}..{tip}")
        return out.split() if out else []

    # -- content helpers -------------------------------------------------------------------
    def _entry(self, commit: str | None, path: str) -> tuple[str, str] | None:
        """(mode, blob) of path in commit, or None."""
        if not commit:
            return None
        out = git(self.repo, "ls-tree", "-z", commit, "--", path)
        if not out:
            return None
        meta = out.split("\t", 1)[0].split()
        return (meta[0], meta[2]) if meta[1] == "blob" else None

    def _index_entry(self, path: str) -> tuple[str, str] | None:
        out = git(self.repo, "ls-files", "-s", "-z", "--", path)
        if not out:
            return None
        meta = out.split("\0")[0].split("\t", 1)[0].split()
        return (meta[0], meta[1])

    def _worktree_blob(self, path: str) -> str | None:
        """The blob id the user's file would have (None if absent)."""
        full = self.repo / path
        if full.is_symlink():
            return git(self.repo, "hash-object", "--stdin", input=os.readlink(full).encode())
        if not full.exists():
            return None
        if full.is_dir():
            return "directory"
        return git(self.repo, "hash-object", "--", path)

    def _write_blob(self, path: str, entry: tuple[str, str] | None) -> None:
        full = self.repo / path
        if entry is None:
            if full.is_symlink() or full.is_file():
                full.unlink()
                _prune_empty_dirs(full.parent, self.repo)
            return
        mode, blob = entry
        data = subprocess.run(["git", "cat-file", "blob", blob], cwd=self.repo, capture_output=True, check=True).stdout
        full.parent.mkdir(parents=True, exist_ok=True)
        if full.is_symlink() or (mode == "120000" and full.exists()):
            full.unlink()
        if mode == "120000":
            os.symlink(data.decode(), full)
            return
        atomic_write(full, data, 0o755 if mode == "100755" else 0o644)

    def _set_index(self, entries: dict[str, tuple[str, str] | None], env: dict | None = None) -> None:
        for path, entry in entries.items():
            if entry is None:
                git(self.repo, "update-index", "--force-remove", "--", path, env=env)
            else:
                git(self.repo, "update-index", "--add", "--cacheinfo", f"{entry[0]},{entry[1]},{path}", env=env)

    # -- 3. apply --------------------------------------------------------------------------
    def apply_plan(self, plan_id: str, base: str, goal: str, *, commit: bool = True) -> dict:
        """Bring the plan's changes into the user's checkout. Returns the apply record."""
        tip = self.branch_tip(plan_id)
        if not tip:
            raise GitError(f"branch {self.branch_name(plan_id)} is gone (was the plan discarded?)")
        changes = self.changed_paths(base, tip)
        if not changes:
            raise GitError(f"plan {plan_id} changed no files: nothing to apply")
        paths = [p for _, p in changes]
        conflicts = [p for p in paths if self._worktree_blob(p) != (self._entry(base, p) or (None, None))[1]]
        if conflicts:
            shown = ", ".join(conflicts[:8]) + (f" and {len(conflicts) - 8} more" if len(conflicts) > 8 else "")
            raise GitError(
                f"refusing to apply plan {plan_id}: you changed {shown} since the plan started; "
                f"commit or stash your changes to {'it' if len(conflicts) == 1 else 'them'} first "
                f"(or `agx discard {plan_id}`)"
            )
        head = self.head()
        after = {p: self._entry(tip, p) for p in paths}
        before = {p: self._entry(base, p) for p in paths}
        clean = head is not None and all(
            self._entry(head, p) == before[p] and self._index_entry(p) == before[p] for p in paths
        )
        record = {
            "applied_at": time.time(),
            "mode": "commit" if (commit and clean) else "worktree",
            "files": [{"path": p, "before": before[p], "after": after[p]} for p in paths],
            "commit": None,
            "parent": head,
        }
        if record["mode"] == "commit":
            record["commit"] = self._commit_onto_head(head, after, f"agx: {goal or plan_id}\n\nagx-plan: {plan_id}")
            # The user's index follows HEAD for these paths (it matched HEAD before).
            self._set_index(after)
        for p in paths:
            self._write_blob(p, after[p])
        return record

    def _commit_onto_head(self, head: str, entries: dict[str, tuple[str, str] | None], message: str) -> str:
        with tempfile.TemporaryDirectory(prefix="agx-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git(self.repo, "read-tree", head, env=env)
            self._set_index(entries, env=env)
            tree = git(self.repo, "write-tree", env=env)
        new = git(self.repo, *self._ident, "commit-tree", tree, "-p", head, "-m", message)
        # Compare-and-swap: fails (nothing changed) if HEAD moved under us.
        git(self.repo, "update-ref", "-m", "agx apply", "HEAD", new, head)
        return new

    # -- 4. undo ---------------------------------------------------------------------------
    def undo_apply(self, plan_id: str, applied: dict) -> None:
        files = applied["files"]
        changed = [f["path"] for f in files if self._worktree_blob(f["path"]) != (f["after"] or (None, None))[1]]
        if changed:
            raise GitError(
                f"refusing to undo plan {plan_id}: {', '.join(changed[:8])} changed since agx applied it; "
                "commit, stash or revert those changes first"
            )
        for f in files:
            if f["before"] and not git_ok(self.repo, "cat-file", "-e", f["before"][1]):
                raise GitError(f"cannot undo plan {plan_id}: the original of {f['path']} is no longer in git")
        entries_before = {f["path"]: _entry_tuple(f["before"]) for f in files}
        if applied["mode"] == "commit":
            head = self.head()
            if head != applied["commit"]:
                raise GitError(
                    f"refusing to undo plan {plan_id}: HEAD moved past its commit {applied['commit'][:10]}; "
                    f"revert it with `git revert {applied['commit'][:10]}`"
                )
            staged = [f["path"] for f in files if self._index_entry(f["path"]) != _entry_tuple(f["after"])]
            if staged:
                raise GitError(f"refusing to undo plan {plan_id}: staged changes in {', '.join(staged[:8])}")
            git(self.repo, "update-ref", "-m", "agx undo", "HEAD", applied["parent"], head)
            self._set_index(entries_before)
        for f in files:
            self._write_blob(f["path"], entries_before[f["path"]])

    # -- 5. discard ------------------------------------------------------------------------
    def discard_plan(self, plan_id: str) -> list[str]:
        """Remove the plan's worktree and branch; returns what was removed."""
        removed = []
        path = self.worktree_path(plan_id)
        if path.exists():
            if not git_ok(self.repo, "worktree", "remove", "--force", "--force", str(path)):
                shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path.relative_to(self.repo)))
        git(self.repo, "worktree", "prune", check=False)
        branch = self.branch_name(plan_id)
        if self.branch_tip(plan_id):
            git(self.repo, "branch", "-D", "-q", branch)
            removed.append(branch)
        return removed


def _entry_tuple(value) -> tuple[str, str] | None:
    return tuple(value) if value else None  # JSON turns tuples into lists


def _prune_empty_dirs(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


class WorktreeCommitter:
    """Makes one commit per task in a plan's worktree, one commit at a time."""

    def __init__(self, worktree: Path, ident: list[str]):
        self.worktree = worktree
        self._ident = ident
        self._lock = asyncio.Lock()

    async def commit(self, message: str, paths: list[str] | None, exclude: set[str]) -> str | None:
        """Commit `paths` (None: everything changed except `exclude`); None if nothing changed."""
        async with self._lock:
            return await asyncio.to_thread(self._commit_sync, message, paths, exclude)

    def _addable(self, paths: list[str]) -> list[str]:
        """The paths `git add` can take: on disk or known to the index (a deletion).

        A task's change list is read from two `git status` snapshots; a file another task was
        writing at that moment (agx's own `*.agx-tmp` before its rename, a tool's scratch file)
        can be gone by commit time, and one such path would make `git add` refuse them all."""
        paths = [p for p in paths if not p.endswith(TMP_SUFFIX)]
        tracked = set(git(self.worktree, "--literal-pathspecs", "ls-files", "-z", "--", *paths).split("\0")) if paths else set()
        return [p for p in paths if p in tracked or os.path.lexists(self.worktree / p)]

    def _commit_sync(self, message: str, paths: list[str] | None, exclude: set[str]) -> str | None:
        w = self.worktree
        if paths is None:
            git(w, "add", "-A", "--", ".")
            for p in exclude:
                git(w, "reset", "-q", "--", p, check=False)
        else:
            paths = self._addable([p for p in paths or [] if p not in exclude])
            if not paths:
                return None
            git(w, "--literal-pathspecs", "add", "-A", "--", *paths)
        if git_ok(w, "diff", "--cached", "--quiet"):
            return None
        git(w, *self._ident, "commit", "-q", "--no-verify", "-m", message)
        return git(w, "rev-parse", "HEAD")
