"""Git isolation: plans run in their own worktree; the user's files and index are untouched.

Life of a plan's changes:

1. `snapshot()` — a commit of exactly what the user sees (HEAD + staged + unstaged +
   untracked-but-not-ignored files), built with a *temporary* index (GIT_INDEX_FILE) so the
   user's index is never written. Untracked files that look like secrets (`.env`, `*.pem`,
   `id_rsa`, ... see SECRET_PATTERNS) are kept out, and the caller reports them. The commit
   is referenced by nothing but the plan's ref.
2. `create_worktree()` — `refs/agx/<id>` is set to the snapshot, then
   `git worktree add --detach .agx/worktrees/<id> <snapshot>`. The plan's ref lives outside
   refs/heads, so `git push --all` (or `--mirror`-less pushes of branches) never publishes it.
   Tasks run in the worktree, and each task that changed files becomes one commit on its
   detached HEAD, after which the ref is moved to it (`WorktreeCommitter`, under a lock).
   The caller records its intent (plan_store, `worktree_ready=False`) before this, so a
   crash at any point is cleaned up by the next start (`remove_plan_checkout`,
   `sweep_orphans`).
3. `apply_plan()` — the diff snapshot..ref goes into the user's checkout. Every file it
   touches must still hold what the snapshot saw, or apply refuses (the user changed it
   meanwhile). When the touched files had no uncommitted changes, the result is one commit on
   the user's branch; otherwise the files are written and left uncommitted (a commit would
   sweep the user's own uncommitted edits in with agx's). Before it reports success, the
   applied diff is compared with the plan's; a mismatch is rolled back and refused, naming
   the paths. What was applied is recorded.
4. `undo_apply()` — reverts the last apply, refusing (like Aider) when a touched file changed
   since, or, for a commit, when HEAD has moved past it.
5. `discard_plan()` — removes the worktree and the ref.

Paths are bytes to git. Every path read from git comes through `-z` output decoded with
`surrogateescape`, so a file name that is not UTF-8 survives the round trip to git arguments
and the file system unchanged (Python encodes such strings back to the same bytes);
`display()` makes one printable.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from agx.workspace.crashpoints import armed, crash_point
from agx.workspace.files import TMP_SUFFIX, atomic_write
from agx.workspace.state_dir import STATE_DIR_NAME, ensure_state_dir

AGX_IDENTITY = ("agx", "agx@localhost")
REF_PREFIX = "refs/agx/"
LEGACY_BRANCH_PREFIX = "refs/heads/agx/"  # agx before refs/agx: plan branches users could push
PLAN_ID_RE = re.compile(r"^p\d{6}-\d{6}-[0-9a-f]{4}$")
WORKTREES = "worktrees"

# Untracked files with these names are never copied into a plan's snapshot (and so never into
# a commit agx makes): matched against each path's last component, case-insensitively.
SECRET_PATTERNS = (
    ".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.ppk", "*.kdbx",
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "credentials", "credentials.json", "secrets.json",
    "secrets.yaml", "secrets.yml", "secrets.toml", ".netrc", ".npmrc", ".pypirc", ".git-credentials",
    ".htpasswd", "*.tfvars", "service-account*.json",
)
# Templates that are meant to be committed, though they match `.env.*`.
SECRET_EXCEPTIONS = (".env.example", ".env.sample", ".env.template", ".env.dist", ".env.defaults")


def looks_secret(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    if name in SECRET_EXCEPTIONS:
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_PATTERNS)


def display(path: str) -> str:
    """A path for the terminal: bytes that are not UTF-8 shown as \\xNN, never an encode error."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
    # surrogateescape: paths that are not UTF-8 come back as the same bytes when used again.
    out = proc.stdout.decode("utf-8", "surrogateescape")
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
    excluded: list[str] = field(default_factory=list)  # untracked files kept out: they look like secrets


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
    def ref_name(plan_id: str) -> str:
        """The plan's ref: outside refs/heads, so pushing branches never publishes it."""
        return f"{REF_PREFIX}{plan_id}"

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
            excluded = self._untracked_secrets()
            if excluded:
                git(self.repo, "update-index", "-z", "--force-remove", "--stdin", env=env,
                    input=b"".join(os.fsencode(p) + b"\0" for p in excluded))
            tree = git(self.repo, "write-tree", env=env)
        parents = ["-p", head] if head else []
        commit = git(self.repo, *self._ident, "commit-tree", tree, *parents, "-m", message)
        return Snapshot(commit=commit, head=head, branch=branch, excluded=excluded)

    def _untracked_secrets(self) -> list[str]:
        """Untracked, not ignored files whose names look like secrets (read-only on the user's index)."""
        specs = [f":(glob,icase)**/{p}" for p in SECRET_PATTERNS]
        out = git(self.repo, "ls-files", "-z", "--others", "--exclude-standard", "--", *specs)
        return sorted(p for p in out.split("\0") if p and looks_secret(p))

    # -- 2. worktree -----------------------------------------------------------------------
    def create_worktree(self, plan_id: str, snapshot: Snapshot) -> Path:
        """The plan's ref, then its worktree (detached at the snapshot). Record the intent first:
        a crash in here leaves pieces that `remove_plan_checkout` cleans up."""
        path = self.worktree_path(plan_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The empty old value: create only, never move a ref that already exists.
        git(self.repo, "update-ref", "-m", "agx plan", self.ref_name(plan_id), snapshot.commit, "")
        crash_point("ref")
        args = ["worktree", "add", "-q", "--detach", str(path), snapshot.commit]
        if armed("worktree-add"):
            _add_worktree_and_die(self.repo, self.git_dir, args, plan_id)
        git(self.repo, *args)
        crash_point("worktree")
        return path

    def committer(self, worktree: Path, plan_id: str) -> "WorktreeCommitter":
        return WorktreeCommitter(Path(worktree), self._ident, self.ref_name(plan_id))

    def branch_tip(self, plan_id: str) -> str | None:
        """The plan's last commit: refs/agx/<id> (or the agx/<id> branch of an older agx)."""
        for ref in (self.ref_name(plan_id), f"{LEGACY_BRANCH_PREFIX}{plan_id}"):
            tip = git(self.repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
            if tip:
                return tip
        return None

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
        out = git(self.repo, "--literal-pathspecs", "ls-tree", "-z", "--full-tree", commit, "--", path)
        if not out:
            return None
        meta = out.split("\t", 1)[0].split()
        return (meta[0], meta[2]) if meta[1] == "blob" else None

    def _index_entry(self, path: str) -> tuple[str, str] | None:
        out = git(self.repo, "--literal-pathspecs", "ls-files", "-s", "-z", "--", path)
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
            os.symlink(os.fsdecode(data), full)
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
            raise GitError(f"{self.ref_name(plan_id)} is gone (was the plan discarded?)")
        changes = self.changed_paths(base, tip)
        if not changes:
            raise GitError(f"plan {plan_id} changed no files: nothing to apply")
        paths = [p for _, p in changes]
        conflicts = [p for p in paths if self._worktree_blob(p) != (self._entry(base, p) or (None, None))[1]]
        if conflicts:
            shown = ", ".join(map(display, conflicts[:8])) + (f" and {len(conflicts) - 8} more" if len(conflicts) > 8 else "")
            raise GitError(
                f"refusing to apply plan {plan_id}: you changed {shown} since the plan started; "
                f"commit or stash your changes to {'it' if len(conflicts) == 1 else 'them'} first "
                f"(or `agx discard {plan_id}`)"
            )
        head = self.head()
        after = {p: self._entry(tip, p) for p in paths}
        before = {p: self._entry(base, p) for p in paths}
        # Every path the diff named must be found again by name on both sides; one that is not
        # (a name git and agx disagree on) would be applied as nothing.
        lost = [p for status, p in changes
                if (status != "D" and after[p] is None) or (status != "A" and before[p] is None)]
        if lost:
            raise GitError(f"refusing to apply plan {plan_id}: agx cannot carry "
                           f"{', '.join(map(display, lost[:8]))} exactly; nothing was changed "
                           f"(the plan's changes are on {self.ref_name(plan_id)})")
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
        wrong = self._misapplied(base, tip, record)
        if wrong:
            self._roll_back(record, before)
            raise GitError(f"refusing to apply plan {plan_id}: {', '.join(map(display, wrong[:8]))} did not come out "
                           f"as the plan made {'it' if len(wrong) == 1 else 'them'}; the apply was rolled back and "
                           f"nothing was changed (the plan's changes are on {self.ref_name(plan_id)})")
        return record

    def _raw_diff(self, a: str, b: str) -> bytes:
        return subprocess.run(["git", "diff", "--raw", "-z", "--no-renames", "--no-abbrev", a, b],
                              cwd=self.repo, capture_output=True, check=True).stdout

    def _misapplied(self, base: str, tip: str, record: dict) -> list[str]:
        """Paths where what the user now has differs from the plan's diff ([] when exact)."""
        wrong = [f["path"] for f in record["files"]
                 if self._worktree_blob(f["path"]) != (f["after"] or (None, None))[1]]
        if record["mode"] == "commit" and self._raw_diff(record["parent"], record["commit"]) != self._raw_diff(base, tip):
            wrong = wrong or [f["path"] for f in record["files"]]
        return wrong

    def _roll_back(self, record: dict, before: dict) -> None:
        if record["mode"] == "commit":
            git(self.repo, "update-ref", "-m", "agx apply rolled back", "HEAD", record["parent"], record["commit"])
            self._set_index(before)
        for path, entry in before.items():
            self._write_blob(path, entry)

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
        """Remove the plan's worktree and ref; returns what was removed."""
        return remove_plan_checkout(self.repo, plan_id)


def _common_dir(repo: Path) -> Path:
    out = git(repo, "rev-parse", "--git-common-dir")
    path = Path(out)
    return path if path.is_absolute() else (Path(repo) / path).resolve()


def _remove_worktree(repo: Path, path: Path) -> bool:
    """Remove a worktree however far its creation got; True when something was there.

    `git worktree prune` leaves a *locked* half-made worktree alone, and one whose HEAD is all
    zeros breaks `git fsck` and `git gc`: `remove --force --force` takes it, and what git
    will not remove (no administrative entry, or a folder git does not know) goes by hand."""
    found = path.exists() or os.path.lexists(path)
    admin_root = _common_dir(repo) / WORKTREES
    admin = []
    if admin_root.is_dir():
        target = os.path.realpath(path)
        for entry in admin_root.iterdir():
            try:
                gitdir = (entry / "gitdir").read_text(encoding="utf-8", errors="surrogateescape").strip()
            except OSError:
                continue
            if os.path.realpath(os.path.dirname(gitdir)) == target:
                admin.append(entry)
    if admin or found:
        git_ok(repo, "worktree", "remove", "--force", "--force", str(path))
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
    for entry in admin:
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
    git(repo, "worktree", "prune", check=False)
    return found or bool(admin)


def remove_plan_checkout(repo: Path, plan_id: str, worktree: str | None = None, ref: str | None = None) -> list[str]:
    """Remove a plan's worktree (complete or half-made) and its ref; returns what was removed."""
    repo = Path(repo)
    removed = []
    path = repo / (worktree or f"{STATE_DIR_NAME}/{WORKTREES}/{plan_id}")
    if _remove_worktree(repo, path):
        removed.append(str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path))
    refs = {f"{REF_PREFIX}{plan_id}", f"{LEGACY_BRANCH_PREFIX}{plan_id}"}
    if ref:
        refs.add(ref if ref.startswith("refs/") else f"refs/heads/{ref}")
    for name in sorted(refs):
        if git(repo, "rev-parse", "--verify", "-q", name, check=False):
            git(repo, "update-ref", "-d", name)
            removed.append(name.removeprefix("refs/heads/"))
    return removed


def sweep_orphans(repo: Path, has_record) -> list[str]:
    """Remove worktrees under .agx/worktrees and refs under refs/agx that no plan record knows.

    `has_record(plan_id)` is asked at the moment of removal; since agx records a plan before
    it creates anything for it, a piece without a record is left by a crash of an older agx
    (or a record deleted by hand), never by a run in progress. Legacy `agx/<plan-id>`
    branches are removed only when their name is a plan id. Returns what was removed."""
    repo = Path(repo)
    removed: list[str] = []
    ours = os.path.realpath(repo / STATE_DIR_NAME / WORKTREES)
    listing = git(repo, "worktree", "list", "--porcelain", "-z", check=False)
    for line in listing.split("\0"):
        if not line.startswith("worktree "):
            continue
        path = line[len("worktree "):]
        real = os.path.realpath(path)
        if os.path.dirname(real) != ours:
            continue  # the main checkout, or a worktree of the user's
        plan_id = os.path.basename(real)
        if not has_record(plan_id):
            removed += remove_plan_checkout(repo, plan_id, worktree=os.path.relpath(real, os.path.realpath(repo)))
    folder = repo / STATE_DIR_NAME / WORKTREES
    if folder.is_dir():  # folders git never registered (a crash before its first write)
        for entry in folder.iterdir():
            if not has_record(entry.name):
                removed += remove_plan_checkout(repo, entry.name)
    refs = git(repo, "for-each-ref", "--format=%(refname)", REF_PREFIX, LEGACY_BRANCH_PREFIX, check=False)
    for ref in refs.splitlines():
        plan_id = ref.rsplit("/", 1)[-1]
        legacy = ref.startswith(LEGACY_BRANCH_PREFIX)
        if (legacy and not PLAN_ID_RE.match(plan_id)) or has_record(plan_id):
            continue
        removed += remove_plan_checkout(repo, plan_id)
    return removed


def sync_plan_ref(worktree: Path, ref: str) -> None:
    """Move the plan's ref to its worktree's HEAD when HEAD is ahead of it (a commit whose ref
    update was cut short by a crash, or one a task's command made itself)."""
    head = git(worktree, "rev-parse", "--verify", "-q", "HEAD", check=False)
    tip = git(worktree, "rev-parse", "--verify", "-q", ref, check=False)
    if head and head != tip and (not tip or git_ok(worktree, "merge-base", "--is-ancestor", tip, head)):
        git(worktree, "update-ref", "-m", "agx task", ref, head, check=False)


def _add_worktree_and_die(repo: Path, git_dir: Path, args: list[str], plan_id: str) -> None:
    """Test hook (AGX_TEST_KILL_AT=worktree-add): run `git worktree add`, and SIGKILL git and
    agx together the moment git has written its administrative files — the state a kill in
    the middle of worktree creation leaves (a locked worktree whose HEAD is all zeros)."""
    import signal

    common = _common_dir(repo)
    proc = subprocess.Popen(["git", *args], cwd=repo, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    head = common / WORKTREES / plan_id / "HEAD"  # written (all zeros) after `locked`
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None and not head.exists():
        pass  # a busy wait: the window until git's child process sets HEAD is a millisecond
    os.killpg(proc.pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


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

    def __init__(self, worktree: Path, ident: list[str], ref: str):
        self.worktree = worktree
        self._ident = ident
        self.ref = ref  # moved to each new commit (the worktree's HEAD is detached)
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
        try:
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
        finally:
            # The ref follows the worktree's HEAD — also when a command committed by itself.
            sync_plan_ref(w, self.ref)
