"""The plan lifecycle calls the shell makes: the same PlanStore / GitIsolation / Executor calls
the headless `agx plan|run|apply|undo|discard` commands make, gathered in one place so the shell
has no logic of its own. Blocking calls (git) run in thread workers; `execute` is a coroutine
run on the app's event loop (the executor is asyncio; its subprocesses never block the UI).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from agx.config.schema import AgxConfig
from agx.execution import events as ev
from agx.execution.executor import Executor, RunResult
from agx.execution.policy import ApprovalMode, Policy
from agx.planning.plan import Plan
from agx.planning.tools import ToolCatalogue
from agx.workspace.git_isolation import GitError, GitIsolation
from agx.workspace.plan_store import PlanRecord, PlanRecorder, PlanStore


@dataclass
class PlanRun:
    """One approved plan being (or having been) run in its worktree."""

    record: PlanRecord
    store: PlanStore
    git: GitIsolation
    executor: Executor
    result: RunResult | None = None
    subscribers: list[Callable[[ev.PlanEvent], Any]] = field(default_factory=list)


def save_planned(repo: Path, plan_id: str, request: str, plan: dict, errors: list[str]) -> PlanRecord:
    """Record a plan the user is reviewing (state "planned"), as `agx plan` does."""
    store = PlanStore(repo)
    rec = PlanRecord(plan_id=plan_id, goal=str(plan.get("goal", "")), request=request, plan=plan,
                     state="planned", errors=list(errors))
    store.save(rec)
    return rec


def set_state(repo: Path, plan_id: str, state: str, **fields: Any) -> PlanRecord | None:
    store = PlanStore(repo)
    try:
        rec = store.load(plan_id)
    except Exception:
        return None
    rec.state = state
    for k, v in fields.items():
        setattr(rec, k, v)
    store.save(rec)
    return rec


def prepare_run(repo: Path, config: AgxConfig, catalogue: ToolCatalogue, plan_id: str, request: str,
                plan: Plan, engine: Any) -> PlanRun:
    """Snapshot what the user sees, create the plan's worktree on agx/<plan-id>, build the
    executor (approval mode ASK: the shell approves task by task) and its plan recorder.
    Blocking: call from a thread."""
    git = GitIsolation(repo)
    store = PlanStore(repo)
    snap = git.snapshot(f"agx snapshot before plan {plan_id}")
    worktree = git.create_worktree(plan_id, snap)
    rec = PlanRecord(
        plan_id=plan_id, goal=plan.goal, request=request, plan=plan.model_dump(), state="running",
        pid=os.getpid(), base_commit=snap.commit, head_at_start=snap.head, user_branch=snap.branch,
        branch=git.branch_name(plan_id), worktree=str(worktree.relative_to(git.repo)),
    )
    store.save(rec)
    ex = config.execution
    executor = Executor(
        plan_id, catalogue, worktree, max_parallel=ex.max_parallel, task_timeout_s=ex.task_timeout_s,
        output_cap_bytes=ex.output_cap_bytes, policy=Policy(ApprovalMode.ASK), engine=engine,
        committer=git.committer(worktree), test_command=ex.test_command,
    )
    executor.subscribe(PlanRecorder(store, rec))
    return PlanRun(record=rec, store=store, git=git, executor=executor)


async def execute(run: PlanRun, plan: Plan, approved: list[str], denied: list[str]) -> RunResult:
    """Feed the plan and the user's decisions to the executor and run it to the end."""
    ex = run.executor
    for task in plan.tasks:
        ex.add_task(task)
    if approved:
        ex.approve(approved)
    if denied:
        ex.deny(denied)
    ex.close_plan()
    try:
        result = await ex.run()
    finally:
        rec = run.record
        statuses = {n.status.value for n in ex.nodes.values()}
        if any(s == "cancelled" for s in statuses):
            rec.state = "cancelled"
        elif all(s == "succeeded" for s in statuses) and statuses:
            rec.state = "done"
        else:
            rec.state = "failed"
        rec.finished_at = time.time()
        run.store.save(rec)
    run.result = result
    return result


def apply(repo: Path, plan_id: str) -> PlanRecord:
    """`agx apply`: bring the plan's branch into the user's checkout; record it for undo."""
    store = PlanStore(repo)
    rec = store.load(plan_id)
    if not rec.base_commit:
        raise GitError(f"plan {plan_id} never ran: nothing to apply")
    if rec.state == "applied":
        raise GitError(f"plan {plan_id} is already applied (u undoes it)")
    applied = GitIsolation(repo).apply_plan(plan_id, rec.base_commit, rec.goal)
    rec.applied, rec.state = applied, "applied"
    store.save(rec)
    return rec


def undo(repo: Path, plan_id: str) -> PlanRecord:
    """`agx undo`: revert the plan's apply (refused when files changed since)."""
    store = PlanStore(repo)
    rec = store.load(plan_id)
    if not rec.applied:
        raise GitError(f"plan {plan_id} was not applied: nothing to undo")
    GitIsolation(repo).undo_apply(plan_id, rec.applied)
    rec.state = "undone"
    store.save(rec)
    return rec


def discard(repo: Path, plan_id: str) -> list[str]:
    """`agx discard`: remove the plan's worktree and branch (an applied plan stays applied)."""
    store = PlanStore(repo)
    rec = store.load(plan_id)
    removed = GitIsolation(repo).discard_plan(plan_id)
    if rec.state != "applied":
        rec.state = "discarded"
    rec.worktree = None
    store.save(rec)
    return removed


def plan_diff_args(rec: PlanRecord) -> tuple[str, ...] | None:
    """`git diff` arguments for the whole plan (snapshot..branch), None before it ran."""
    if not rec.base_commit or not rec.branch:
        return None
    return ("diff", rec.base_commit, rec.branch)
