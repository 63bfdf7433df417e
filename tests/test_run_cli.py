"""`agx run --plan`, `agx apply|discard|undo`, `agx plans` end to end, and a kill -9 mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agx.cli.main import main


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def write_plan(tmp_path: Path, tasks: list[dict], name: str = "plan.json", goal: str = "demo goal") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"goal": goal, "tasks": tasks}))
    return path


def sh(tid, command, deps=()):
    return {"id": tid, "title": f"run {tid}", "tool": "shell", "args": {"command": command}, "deps": list(deps)}


def agx(repo: Path, *args: str) -> int:
    return main(["-C", str(repo), *args])


def records(repo: Path) -> list[dict]:
    """The plan records as agx reads them (the record file plus its journal of task events)."""
    from dataclasses import asdict

    from agx.workspace.plan_store import PlanStore

    return [asdict(r) for r in PlanStore(repo).all()]


def test_run_plan_in_parallel_with_summary(git_repo, tmp_path, capsys):
    plan = write_plan(tmp_path, [sh(f"s{i}", "sleep 1") for i in range(4)])
    code = agx(git_repo, "run", "--plan", str(plan), "--yes", "--max-parallel", "4")
    out = capsys.readouterr().out
    assert code == 0
    assert "Summary:" in out and out.count("succeeded") == 4
    assert "wall time" in out and "sum of task times" in out
    assert "No files changed; the worktree and branch were removed." in out
    (rec,) = records(git_repo)
    assert rec["state"] == "done" and all(t["status"] == "succeeded" for t in rec["tasks"].values())
    # The run itself (from the first dispatch; imports and git setup are not the tasks' time).
    assert rec["wall_s"] < 2.5, f"four 1 s tasks at --max-parallel 4 took {rec['wall_s']:.1f}s"
    assert rec["task_s"] >= 4.0
    # The session log got the plan and its outcome.
    log = next((git_repo / ".agx" / "sessions").glob("*.jsonl")).read_text().splitlines()
    kinds = [json.loads(line)["type"] for line in log]
    assert kinds == ["plan", "plan_outcome"]


def test_failing_plan_exits_1_and_apply_discard_round_trip(git_repo, tmp_path, capsys):
    plan = write_plan(tmp_path, [
        {"id": "w", "title": "write notes", "tool": "write_file", "args": {"path": "notes.md", "content": "hi\n"}, "deps": []},
        sh("bad", "exit 4", deps=["w"]),
        sh("after", "echo unreachable", deps=["bad"]),
    ])
    assert agx(git_repo, "run", "--plan", str(plan), "--yes") == 1
    out = capsys.readouterr().out
    assert "FAILED  bad" in out and "skipped after  (dependency bad failed)" in out
    (rec,) = records(git_repo)
    assert rec["state"] == "failed" and rec["tasks"]["w"]["commit"]
    assert not (git_repo / "notes.md").exists()

    # apply without an id looks for a *finished* (done) plan: there is none.
    assert agx(git_repo, "apply") == 2
    assert "no finished plan to apply" in capsys.readouterr().err
    # Explicitly, the failed plan's committed work can be applied.
    assert agx(git_repo, "apply", rec["plan_id"][:9]) == 0
    assert (git_repo / "notes.md").read_text() == "hi\n"
    assert agx(git_repo, "apply", rec["plan_id"]) == 1
    assert "already applied" in capsys.readouterr().err
    assert agx(git_repo, "plans") == 0
    assert "applied" in capsys.readouterr().out

    assert agx(git_repo, "undo") == 0
    assert not (git_repo / "notes.md").exists()
    assert agx(git_repo, "undo") == 2
    assert "nothing to undo" in capsys.readouterr().err

    assert agx(git_repo, "discard", rec["plan_id"]) == 0
    assert git(git_repo, "for-each-ref", "refs/agx", "refs/heads/agx") == ""
    assert not (git_repo / ".agx" / "worktrees" / rec["plan_id"]).exists()


def test_apply_refuses_when_user_changed_the_file(git_repo, tmp_path, capsys):
    plan = write_plan(tmp_path, [{"id": "e", "title": "edit", "tool": "edit_file",
                                  "args": {"path": "README.md", "edits": [{"search": "A demo project", "replace": "A DEMO project"}]},
                                  "deps": []}])
    assert agx(git_repo, "run", "--plan", str(plan), "--yes") == 0
    (git_repo / "README.md").write_text("mine now\n")
    assert agx(git_repo, "apply") == 1
    err = capsys.readouterr().err
    assert "refusing to apply" in err and "you changed README.md" in err
    assert (git_repo / "README.md").read_text() == "mine now\n"
    assert records(git_repo)[0]["state"] == "done"


def test_undo_refuses_when_touched_files_are_dirty(git_repo, tmp_path, capsys):
    plan = write_plan(tmp_path, [{"id": "w", "title": "w", "tool": "write_file",
                                  "args": {"path": "README.md", "content": "agx\n"}, "deps": []}])
    assert agx(git_repo, "run", "--plan", str(plan), "--yes") == 0
    assert agx(git_repo, "apply") == 0
    (git_repo / "README.md").write_text("agx\nplus mine\n")
    assert agx(git_repo, "undo") == 1
    assert "README.md changed since agx applied it" in capsys.readouterr().err
    assert (git_repo / "README.md").read_text() == "agx\nplus mine\n"


@pytest.mark.parametrize(
    "tasks, message",
    [
        ([sh("a", "true"), sh("a", "true")], "duplicate"),
        ([sh("a", "true", deps=["ghost"])], "ghost"),
        ([sh("a", "true", deps=["b"]), sh("b", "true", deps=["a"])], "cycle"),
        ([{"id": "a", "title": "t", "tool": "teleport", "args": {}, "deps": []}], "teleport"),
    ],
)
def test_invalid_plan_file_exits_2_with_its_errors(git_repo, tmp_path, capsys, tasks, message):
    plan = write_plan(tmp_path, tasks)
    assert agx(git_repo, "run", "--plan", str(plan), "--yes") == 2
    err = capsys.readouterr().err
    assert "invalid plan" in err and message in err.lower()
    assert not (git_repo / ".agx" / "worktrees").exists() or not any((git_repo / ".agx" / "worktrees").iterdir())


def test_bad_invocations(git_repo, tmp_path, capsys):
    assert agx(git_repo, "run", "--plan", str(tmp_path / "missing.json"), "--yes") == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{not json")
    assert agx(git_repo, "run", "--plan", str(tmp_path / "broken.json"), "--yes") == 2
    assert "invalid JSON" in capsys.readouterr().err
    plan = write_plan(tmp_path, [sh("a", "true")])
    # Under pytest stdin is not a terminal: without --yes / --auto read nothing can be approved.
    assert agx(git_repo, "run", "--plan", str(plan)) == 2
    assert "stdin is not a terminal" in capsys.readouterr().err
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    assert agx(outside, "run", "--plan", str(plan), "--yes") == 2
    assert "needs a git repository" in capsys.readouterr().err


def test_auto_read_runs_read_tasks_and_refuses_the_rest_headless(git_repo, tmp_path, capsys):
    plan = write_plan(tmp_path, [
        {"id": "r", "title": "read", "tool": "read_files", "args": {"paths": ["README.md"]}, "deps": []},
        sh("x", "echo would run"),
    ])
    assert agx(git_repo, "run", "--plan", str(plan), "--auto", "read") == 1
    captured = capsys.readouterr()
    assert "not approved (no terminal to ask): x" in captured.err
    (rec,) = records(git_repo)
    assert rec["tasks"]["r"]["status"] == "succeeded" and rec["tasks"]["x"]["status"] == "skipped"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_9_mid_run_leaves_user_files_intact_and_branch_inspectable(git_repo, tmp_path):
    repo = git_repo
    (repo / "README.md").write_text("# demo\n\nuncommitted edit\n")
    (repo / "untracked.txt").write_text("mine\n")
    git(repo, "status")  # settle the index's stat cache before comparing its bytes
    index_before = (repo / ".git" / "index").read_bytes()
    files_before = {p: (repo / p).read_bytes() for p in ("README.md", "untracked.txt", "src/app.py")}

    plan = write_plan(tmp_path, [
        {"id": "w", "title": "write it", "tool": "write_file", "args": {"path": "README.md", "content": "agx\n"}, "deps": []},
        sh("long", "echo $$ > ../long.pid; sleep 120", deps=["w"]),
    ])
    proc = subprocess.Popen([sys.executable, "-m", "agx", "-C", str(repo), "run", "--plan", str(plan), "--yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        rec = None
        while time.monotonic() < deadline:
            recs = records(repo) if (repo / ".agx" / "plans").exists() else []
            if recs and recs[0]["tasks"].get("long", {}).get("pgid"):
                rec = recs[0]
                break
            time.sleep(0.1)
        assert rec is not None, "the run never reached its long task"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    plan_id = rec["plan_id"]
    orphan = rec["tasks"]["long"]["pgid"]

    # The user's files and index are exactly as they were.
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert {p: (repo / p).read_bytes() for p in files_before} == files_before
    # The branch holds the finished task's commit; the worktree is there to inspect.
    assert git(repo, "show", f"refs/agx/{plan_id}:README.md") == "agx"
    assert (repo / ".agx" / "worktrees" / plan_id / "README.md").read_text() == "agx\n"

    # The next start marks the plan interrupted and kills the orphaned `sleep`.
    assert main(["-C", str(repo), "plans"]) == 0
    (after,) = records(repo)
    assert after["state"] == "interrupted" and after["tasks"]["long"]["status"] == "interrupted"
    deadline = time.monotonic() + 5
    while not _gone(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(orphan)
    # `agx discard` cleans up.
    assert main(["-C", str(repo), "discard", plan_id]) == 0
    assert git(repo, "for-each-ref", "refs/agx", "refs/heads/agx") == ""
    assert (repo / ".git" / "index").read_bytes() == index_before


def test_run_with_the_bundled_planner_reports_an_unusable_plan_cleanly(git_repo, tiny_model_path, capsys):
    """The real Delta (bundled SmolLM2) with a token budget too small for any plan: the run
    ends with the planner's errors listed, exit 1, no traceback and no worktree left behind."""
    code = agx(git_repo, "--set", "roles.delta.sampling.max_tokens=24", "--set", "roles.delta.n_ctx=2048",
               "--set", "roles.delta.n_threads=2", "--set", "execution.repair_rounds=0",
               "run", "read the README", "--yes")
    captured = capsys.readouterr()
    assert code == 1
    assert "no valid plan after 0 repair rounds" in captured.err
    assert "max_tokens" in captured.err
    (rec,) = records(git_repo)
    assert rec["state"] == "failed" and rec["errors"]
    assert git(git_repo, "for-each-ref", "refs/agx", "refs/heads/agx") == ""
    assert git(git_repo, "status", "--porcelain") == ""
