"""The shared plan lifecycle (execution/plan_run.py) that `agx run|apply|undo|discard` and the
shell both call: a real git repo, a real executor, real commits."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from agx.config.schema import ExecutionConfig
from agx.execution import plan_run
from agx.execution.policy import ApprovalMode, Policy
from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.plan import Plan
from agx.workspace.plan_store import PlanStore


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


PLAN = Plan.model_validate({"goal": "add notes", "tasks": [
    {"id": "t1", "title": "write notes", "tool": "write_file", "deps": [],
     "args": {"path": "NOTES.md", "content": "remember the milk\n"}},
    {"id": "t2", "title": "list", "tool": "shell", "deps": ["t1"], "args": {"command": "cat NOTES.md"}},
]})


def _start(repo: Path, plan_id: str, policy: Policy) -> plan_run.PlanRun:
    return plan_run.start_run(repo, plan_id, request="add notes", goal=PLAN.goal, plan=PLAN.model_dump(),
                              catalogue=builtin_catalogue(), policy=policy, engine=None,
                              execution=ExecutionConfig(), max_parallel=2, task_timeout_s=30)


def _execute(run: plan_run.PlanRun, approve: list[str]) -> str:
    ex = run.executor
    ex.add_plan(PLAN)
    ex.approve(approve)
    ex.deny([t.id for t in PLAN.tasks if t.id not in approve])
    ex.close_plan()
    result = asyncio.run(ex.run())
    return plan_run.finish_run(run, result).state


def test_start_run_apply_undo_discard_round_trip(git_repo):
    (git_repo / "README.md").write_text("# demo\n\nmy uncommitted edit\n")  # the user's work in progress
    run = _start(git_repo, "p-round-trip", Policy(ApprovalMode.ASK))
    assert run.worktree.is_dir() and git(git_repo, "for-each-ref", "refs/agx/p-round-trip")
    assert PlanStore(git_repo).load("p-round-trip").state == "running"

    assert _execute(run, ["t1", "t2"]) == "done"
    assert not (git_repo / "NOTES.md").exists(), "nothing reaches the checkout before apply"
    assert (git_repo / "README.md").read_text().endswith("my uncommitted edit\n")

    store = PlanStore(git_repo)
    rec = plan_run.apply_plan(store, store.load("p-round-trip"))
    assert rec.state == "applied" and (git_repo / "NOTES.md").read_text() == "remember the milk\n"
    with pytest.raises(plan_run.PlanRunError, match="already applied"):
        plan_run.apply_plan(store, store.load("p-round-trip"))
    assert plan_run.latest_applied(store).plan_id == "p-round-trip"

    plan_run.undo_plan(store, store.load("p-round-trip"))
    assert not (git_repo / "NOTES.md").exists()
    assert (git_repo / "README.md").read_text().endswith("my uncommitted edit\n"), "the user's edit survives"
    with pytest.raises(plan_run.PlanRunError, match="nothing to undo"):
        plan_run.undo_plan(store, store.load("p-round-trip"))

    removed = plan_run.discard_plan(store, store.load("p-round-trip"))
    assert removed and not run.worktree.exists()
    assert store.load("p-round-trip").state == "discarded"
    assert git(git_repo, "for-each-ref", "refs/agx/p-round-trip") == ""


def test_denied_writer_fails_the_plan_and_abandoned_runs_leave_no_worktree(git_repo):
    run = _start(git_repo, "p-denied", Policy(ApprovalMode.ASK))
    assert _execute(run, []) == "failed"  # nothing approved: every task skipped, nothing committed
    store = PlanStore(git_repo)
    with pytest.raises(plan_run.PlanRunError):
        plan_run.undo_plan(store, store.load("p-denied"))

    other = _start(git_repo, "p-abandoned", Policy(ApprovalMode.ASK))
    rec = plan_run.abandon_run(other, "failed", ["no valid plan"])
    assert rec.state == "failed" and rec.errors == ["no valid plan"] and not other.worktree.exists()
    with pytest.raises(plan_run.PlanRunError, match="nothing to apply"):
        plan_run.apply_plan(store, plan_run.save_planned(git_repo, "p-planned", "x", PLAN.model_dump(), []))
    assert plan_run.set_state(git_repo, "p-planned", "discarded").state == "discarded"
    assert plan_run.set_state(git_repo, "no-such-plan", "discarded") is None


def test_start_run_outside_a_git_repo_is_a_plan_run_error(tmp_path):
    with pytest.raises(plan_run.PlanRunError):
        _start(tmp_path, "p-nogit", Policy(ApprovalMode.ASK))
