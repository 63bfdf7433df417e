"""Git isolation on real temporary repositories: snapshot, worktree, per-task commits, apply/undo/discard."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from agx.execution.executor import Executor, Status, run_plan
from agx.execution.policy import ApprovalMode, Policy
from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.plan import Plan
from agx.workspace.git_isolation import GitError, GitIsolation


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def user_view(repo: Path) -> dict[str, bytes]:
    """Every file in the user's checkout except .git and agx's own .agx folder."""
    return {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts[:1] and ".agx" not in p.relative_to(repo).parts[:1]
    }


@pytest.fixture()
def messy_repo(git_repo: Path) -> Path:
    """The fixture repo plus what users have lying around: dirty, staged, untracked, ignored."""
    (git_repo / ".gitignore").write_text("*.log\n")
    git(git_repo, "add", ".gitignore")
    git(git_repo, "commit", "-q", "-m", "ignore logs")
    (git_repo / "README.md").write_text("# demo\n\nA demo project.\nmy unsaved note\n")  # dirty
    (git_repo / "staged.txt").write_text("staged\n")
    git(git_repo, "add", "staged.txt")  # staged
    (git_repo / "scratch.txt").write_text("untracked\n")  # untracked, not ignored
    (git_repo / "build.log").write_text("ignored\n")  # ignored
    return git_repo


def run_isolated(repo: Path, tasks: list[dict], plan_id: str = "p-test", max_parallel: int = 4):
    iso = GitIsolation(repo)
    snap = iso.snapshot()
    wt = iso.create_worktree(plan_id, snap)
    ex = Executor(plan_id, builtin_catalogue(), wt, max_parallel=max_parallel,
                  policy=Policy(ApprovalMode.ALL), committer=iso.committer(wt, plan_id))
    result = asyncio.run(run_plan(Plan.model_validate({"goal": "test goal", "tasks": tasks}), ex))
    return iso, snap, wt, ex, result


def t(tid, tool, deps=(), **args):
    return {"id": tid, "title": f"task {tid}", "tool": tool, "args": args, "deps": list(deps)}


def test_run_never_touches_user_files_or_index(messy_repo):
    repo = messy_repo
    git(repo, "status")  # let git refresh its index now, so later bytes compare fairly
    files_before = user_view(repo)
    index_before = (repo / ".git" / "index").read_bytes()
    head_before = git(repo, "rev-parse", "HEAD")

    iso, snap, wt, ex, result = run_isolated(repo, [
        t("w", "write_file", path="README.md", content="rewritten by agx\n"),
        t("e", "edit_file", path="src/app.py", edits=[{"search": "hello", "replace": "hi"}]),
        t("s", "shell", command="rm scratch.txt staged.txt && echo made > made.txt"),
    ])
    assert result.ok, {i: n.error for i, n in ex.nodes.items()}

    assert (repo / ".git" / "index").read_bytes() == index_before
    assert user_view(repo) == files_before
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    # The worktree started from what the user saw: dirty, staged and untracked files, no ignored ones.
    snap_files = git(repo, "ls-tree", "-r", "--name-only", snap.commit).split("\n")
    assert {"README.md", "staged.txt", "scratch.txt", "src/app.py", ".gitignore"} <= set(snap_files)
    assert "build.log" not in snap_files
    assert git(repo, "show", f"{snap.commit}:README.md").endswith("my unsaved note")
    assert git(repo, "rev-parse", f"{snap.commit}^") == head_before
    # And the plan's work is on its branch.
    assert (wt / "README.md").read_text() == "rewritten by agx\n"
    assert git(repo, "show", "refs/agx/p-test:made.txt") == "made"
    # The plan's ref is outside refs/heads: no branch a push could publish.
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/agx") == "refs/agx/p-test"
    assert git(repo, "branch", "--list", "agx/*") == ""


def test_one_commit_per_writing_task_with_exactly_its_files(git_repo):
    repo = git_repo
    iso, snap, wt, ex, result = run_isolated(repo, [
        t("a", "write_file", path="a.txt", content="a\n"),
        t("b", "write_file", path="b.txt", content="b\n"),
        t("c", "shell", command="sleep 0.3; echo c > c.txt"),
        # Commands running at the same moment in one worktree can't be told apart (documented),
        # so the command that changes nothing runs after the one that does.
        t("quiet", "shell", deps=["c"], command="echo no changes"),
        t("read", "read_files", paths=["README.md"]),
        t("d", "edit_file", deps=["a"], path="a.txt", edits=[{"search": "a", "replace": "A"}]),
    ])
    assert result.ok
    commits = iso.commits_on_branch("p-test", snap.commit)
    assert len(commits) == 4  # a, b, c, d: the read task and the quiet command made none
    by_task = {}
    for sha in commits:
        body = git(repo, "log", "-1", "--format=%B", sha)
        task_id = body.split("agx-task: ")[1].split()[0]
        assert "agx-plan: p-test" in body
        assert body.splitlines()[0] == f"task {task_id}"
        by_task[task_id] = git(repo, "show", "--name-only", "--format=", sha).split()
        assert ex.nodes[task_id].commit == sha
    assert by_task == {"a": ["a.txt"], "b": ["b.txt"], "c": ["c.txt"], "d": ["a.txt"]}
    assert ex.nodes["quiet"].commit is None and ex.nodes["read"].commit is None


def test_failed_task_commits_nothing_and_branch_stays_inspectable(git_repo):
    iso, snap, wt, ex, result = run_isolated(git_repo, [
        t("w", "write_file", path="ok.txt", content="ok\n"),
        t("bad", "shell", deps=["w"], command="echo half > half.txt; exit 1"),
    ])
    assert result.statuses == {"w": Status.SUCCEEDED, "bad": Status.FAILED}
    assert len(iso.commits_on_branch("p-test", snap.commit)) == 1
    assert (wt / "half.txt").exists()  # left in the worktree for inspection, uncommitted


def test_apply_commits_onto_the_users_branch_and_undo_reverts(messy_repo):
    repo = messy_repo
    head = git(repo, "rev-parse", "HEAD")
    status_before = git(repo, "status", "--porcelain")
    iso, snap, wt, ex, result = run_isolated(repo, [
        t("e", "edit_file", path="src/app.py", edits=[{"search": "hello", "replace": "hi"}]),
        t("n", "write_file", path="docs/new.md", content="new\n"),
    ])
    applied = iso.apply_plan("p-test", snap.commit, "test goal")
    assert applied["mode"] == "commit"
    assert git(repo, "rev-parse", "HEAD") == applied["commit"] and git(repo, "rev-parse", "HEAD^") == head
    assert git(repo, "log", "-1", "--format=%s") == "agx: test goal"
    assert set(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == {"src/app.py", "docs/new.md"}
    assert "'hi '" in (repo / "src" / "app.py").read_text() and (repo / "docs" / "new.md").exists()
    # The user's own uncommitted work is exactly as it was (and not in agx's commit).
    assert git(repo, "status", "--porcelain") == status_before
    assert (repo / "README.md").read_text().endswith("my unsaved note\n")

    iso.undo_apply("p-test", applied)
    assert git(repo, "rev-parse", "HEAD") == head
    assert "'hello '" in (repo / "src" / "app.py").read_text()
    assert not (repo / "docs").exists()
    assert git(repo, "status", "--porcelain") == status_before


def test_apply_refuses_to_overwrite_changes_made_meanwhile(git_repo):
    repo = git_repo
    iso, snap, wt, ex, result = run_isolated(repo, [
        t("e", "edit_file", path="src/app.py", edits=[{"search": "hello", "replace": "hi"}]),
    ])
    (repo / "src" / "app.py").write_text("the user's new version\n")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(GitError, match=r"refusing to apply plan p-test: you changed src/app.py since the plan started"):
        iso.apply_plan("p-test", snap.commit, "g")
    assert (repo / "src" / "app.py").read_text() == "the user's new version\n"
    assert git(repo, "rev-parse", "HEAD") == head


def test_apply_keeps_changes_uncommitted_when_the_file_had_the_users_edits(git_repo):
    repo = git_repo
    (repo / "src" / "app.py").write_text("def greet(name):\n    return 'hello ' + name\n# user edit\n")
    head = git(repo, "rev-parse", "HEAD")
    iso, snap, wt, ex, result = run_isolated(repo, [
        t("e", "edit_file", path="src/app.py", edits=[{"search": "hello", "replace": "hi"}]),
    ])
    applied = iso.apply_plan("p-test", snap.commit, "g")
    assert applied["mode"] == "worktree" and applied["commit"] is None
    assert git(repo, "rev-parse", "HEAD") == head  # nothing of the user's got committed
    assert (repo / "src" / "app.py").read_text() == "def greet(name):\n    return 'hi ' + name\n# user edit\n"
    iso.undo_apply("p-test", applied)
    assert (repo / "src" / "app.py").read_text().endswith("'hello ' + name\n# user edit\n")


def test_undo_refusals(git_repo):
    repo = git_repo
    iso, snap, wt, ex, result = run_isolated(repo, [t("w", "write_file", path="README.md", content="agx\n")])
    applied = iso.apply_plan("p-test", snap.commit, "g")
    (repo / "README.md").write_text("edited after apply\n")
    with pytest.raises(GitError, match="refusing to undo plan p-test: README.md changed since agx applied it"):
        iso.undo_apply("p-test", applied)
    assert (repo / "README.md").read_text() == "edited after apply\n"
    (repo / "README.md").write_text("agx\n")
    (repo / "other.txt").write_text("x\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "user commit on top")
    with pytest.raises(GitError, match="HEAD moved past its commit"):
        iso.undo_apply("p-test", applied)
    assert git(repo, "log", "-1", "--format=%s") == "user commit on top"


def test_discard_removes_worktree_and_branch(git_repo):
    iso, snap, wt, ex, result = run_isolated(git_repo, [t("w", "write_file", path="x.txt", content="x\n")])
    assert wt.exists()
    removed = iso.discard_plan("p-test")
    assert not wt.exists()
    assert git(git_repo, "for-each-ref", "refs/agx", "refs/heads/agx") == ""
    assert "refs/agx/p-test" in removed
    assert str(wt) not in git(git_repo, "worktree", "list")


def test_repository_without_commits(tmp_path):
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "notes.txt").write_text("first\n")
    iso, snap, wt, ex, result = run_isolated(repo, [t("w", "write_file", path="notes.txt", content="second\n")])
    assert result.ok and snap.head is None
    assert (repo / "notes.txt").read_text() == "first\n"
    applied = iso.apply_plan("p-test", snap.commit, "g")
    assert applied["mode"] == "worktree"  # no branch to commit onto yet
    assert (repo / "notes.txt").read_text() == "second\n"


def test_commit_skips_paths_gone_by_commit_time(git_repo):
    """Regression (seen in CI): a shell task's change list came from `git status` while a parallel
    write_file's temp file (`.README.md.agx-tmp`) existed; by commit time it was renamed away and
    `git add` refused the whole list ("pathspec did not match"), failing the task."""
    iso = GitIsolation(git_repo)
    wt = iso.create_worktree("p-gone", iso.snapshot())
    (wt / "made.txt").write_text("made\n")
    (wt / "README.md").unlink()  # a tracked deletion is still committable
    committer = iso.committer(wt, "p-gone")
    sha = asyncio.run(committer.commit("task s", ["made.txt", "README.md", ".README.md.agx-tmp", "vanished.txt"],
                                       set()))
    assert sha
    assert git(wt, "show", "--name-status", "--format=", sha).split("\n") == ["D\tREADME.md", "A\tmade.txt"]
    # Nothing left that can be added: no commit, no error.
    assert asyncio.run(committer.commit("task t", [".x.agx-tmp", "vanished.txt"], set())) is None


def test_atomic_write_that_fails_leaves_no_temp_file(tmp_path):
    from agx.workspace.files import TMP_SUFFIX, atomic_write

    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("a folder cannot be renamed over")
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert (target / "inside").read_text() == "a folder cannot be renamed over"
    assert not list(tmp_path.glob(f".*{TMP_SUFFIX}"))
