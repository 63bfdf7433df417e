"""One plan's lifecycle in the user's repository: start → run → apply / undo / discard.

Both front ends call these — `agx run|apply|undo|discard` (cli/cmd_run.py) and the shell
(ui/app.py) — so the sequence of plan store, git isolation and executor calls exists once and the
shell has no plan logic the headless commands lack. Everything here except `finish_run`'s caller
(the executor's `run()` coroutine) is blocking git/file work: the shell calls it from threads.

Errors the user must see are raised as `PlanRunError` (one line, no traceback needed).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agx.config.schema import ExecutionConfig
from agx.execution.executor import Executor, RunResult
from agx.execution.policy import Policy
from agx.planning.tools import ToolCatalogue
from agx.workspace.crashpoints import crash_point
from agx.workspace.git_isolation import GitError, GitIsolation, Snapshot, remove_plan_checkout
from agx.workspace.plan_store import FINISHED_STATES, PlanRecord, PlanRecorder, PlanStore, PlanStoreError, _pid_alive
from agx.workspace.processes import TOKEN_ENV, start_time


class PlanRunError(Exception):
    """A lifecycle step that cannot be done (never ran, still running, already applied, git refused)."""


@dataclass
class PlanRun:
    """One plan being (or having been) run in its worktree; its commits are on refs/agx/<plan-id>."""

    record: PlanRecord
    store: PlanStore
    git: GitIsolation
    snapshot: Snapshot
    worktree: Path
    executor: Executor
    result: RunResult | None = None


def start_run(repo: Path, plan_id: str, *, request: str, goal: str, plan: dict, catalogue: ToolCatalogue,
              policy: Policy, engine: Any, execution: ExecutionConfig, max_parallel: int | None = None,
              task_timeout_s: float | None = None, code_engine: Any = None) -> PlanRun:
    """Snapshot what the user sees, create the worktree, record the plan as running, and build
    its executor with a recorder that keeps `.agx/plans/<id>.json` current. Nothing in the
    user's checkout changes. `execution` is the [execution] config; `max_parallel` and
    `task_timeout_s` override it (the CLI's flags). Raises PlanRunError when git refuses.

    Crash safety: the record (state "running", `worktree_ready=False`, this process's id and
    start time, the run's process token) is on disk before the ref or the worktree exists, so
    a kill at any step (crashpoints.py names them) is cleaned up by the next start's
    `PlanStore.recover_stale()`; the record says "ready" only once the worktree is complete."""
    store = PlanStore(repo)
    try:
        git = GitIsolation(repo)
        snap = git.snapshot(f"agx snapshot before plan {plan_id}")
    except GitError as exc:
        raise PlanRunError(str(exc)) from None
    crash_point("snapshot")
    worktree = git.worktree_path(plan_id)
    rec = PlanRecord(
        plan_id=plan_id, goal=goal, request=request, plan=plan, state="running", pid=os.getpid(),
        pid_start=start_time(os.getpid()), base_commit=snap.commit, head_at_start=snap.head,
        user_branch=snap.branch, branch=git.ref_name(plan_id), worktree=str(worktree.relative_to(git.repo)),
        worktree_ready=False, run_token=secrets.token_hex(16), excluded=list(snap.excluded),
    )
    store.save(rec)
    crash_point("intent")
    try:
        git.create_worktree(plan_id, snap)
    except GitError as exc:
        remove_plan_checkout(git.repo, plan_id, rec.worktree, rec.branch)
        rec.state, rec.errors, rec.finished_at = "failed", [str(exc)], time.time()
        rec.worktree, rec.branch, rec.worktree_ready = None, None, True
        store.save(rec)
        raise PlanRunError(str(exc)) from None
    rec.worktree_ready = True
    store.save(rec)
    crash_point("ready")
    executor = Executor(
        plan_id, catalogue, worktree, max_parallel=max_parallel or execution.max_parallel,
        task_timeout_s=task_timeout_s or execution.task_timeout_s, output_cap_bytes=execution.output_cap_bytes,
        policy=policy, engine=engine, code_engine=code_engine, committer=git.committer(worktree, plan_id), test_command=execution.test_command,
        process_env={TOKEN_ENV: rec.run_token},
        sandbox=execution.sandbox,
    )
    executor.subscribe(PlanRecorder(store, rec))
    return PlanRun(record=rec, store=store, git=git, snapshot=snap, worktree=worktree, executor=executor)


def outcome_state(executor: Executor, result: RunResult | None) -> str:
    """done (every task succeeded) / cancelled (the user or a signal stopped it) / failed."""
    if result is not None and result.ok:
        return "done"
    if result is None or any(n.status.value == "cancelled" for n in executor.nodes.values()):
        return "cancelled"
    return "failed"


def finish_run(run: PlanRun, result: RunResult | None) -> PlanRecord:
    """Record the outcome of a finished (or interrupted) run."""
    run.result = result
    rec = run.record
    rec.state = outcome_state(run.executor, result)
    rec.finished_at = time.time()
    run.store.save(rec)
    return rec


def abandon_run(run: PlanRun, state: str, errors: list[str]) -> PlanRecord:
    """Planning failed or was interrupted before any task ran: record why, remove the worktree."""
    rec = run.record
    rec.state, rec.errors, rec.finished_at = state, list(errors), time.time()
    run.store.save(rec)  # saved before git work, so the outcome is on disk even if removal fails
    run.git.discard_plan(rec.plan_id)
    rec.worktree = None
    run.store.save(rec)
    return rec


def save_planned(repo: Path, plan_id: str, request: str, plan: dict, errors: list[str]) -> PlanRecord:
    """Record a plan the user is reviewing (state "planned")."""
    rec = PlanRecord(plan_id=plan_id, goal=str(plan.get("goal", "")), request=request, plan=plan,
                     state="planned", errors=list(errors))
    PlanStore(repo).save(rec)
    return rec


def set_state(repo: Path, plan_id: str, state: str) -> PlanRecord | None:
    """Change a recorded plan's state (e.g. rejected → "discarded"); None when there is no record."""
    store = PlanStore(repo)
    try:
        rec = store.load(plan_id)
    except PlanStoreError:
        return None
    rec.state = state
    store.save(rec)
    return rec


def apply_plan(store: PlanStore, rec: PlanRecord, *, commit: bool = True) -> PlanRecord:
    """Bring the plan's branch into the user's checkout (one commit, or uncommitted changes when
    the touched files had local edits); remember what was done so `undo_plan` can revert it."""
    if rec.state == "running" and _pid_alive(rec.pid, rec.pid_start):
        raise PlanRunError(f"plan {rec.plan_id} is still running (pid {rec.pid})")
    if rec.state == "applied":
        raise PlanRunError(f"plan {rec.plan_id} is already applied (undo reverts it)")
    if not rec.base_commit or rec.state not in FINISHED_STATES + ("undone",):
        raise PlanRunError(f"plan {rec.plan_id} is {rec.state}: nothing to apply")
    try:
        applied = GitIsolation(store.repo).apply_plan(rec.plan_id, rec.base_commit, rec.goal, commit=commit)
    except GitError as exc:
        raise PlanRunError(str(exc)) from None
    rec.applied, rec.state = applied, "applied"
    store.save(rec)
    return rec


def undo_plan(store: PlanStore, rec: PlanRecord) -> PlanRecord:
    """Revert the plan's apply (git refuses when a touched file changed since)."""
    if not rec.applied or rec.state != "applied":
        raise PlanRunError(f"plan {rec.plan_id} is not applied: nothing to undo")
    try:
        GitIsolation(store.repo).undo_apply(rec.plan_id, rec.applied)
    except GitError as exc:
        raise PlanRunError(str(exc)) from None
    rec.state = "undone"
    store.save(rec)
    return rec


def latest_applied(store: PlanStore) -> PlanRecord | None:
    applied = [r for r in store.all() if r.state == "applied" and r.applied]
    return max(applied, key=lambda r: r.applied.get("applied_at", 0)) if applied else None


def discard_plan(store: PlanStore, rec: PlanRecord) -> list[str]:
    """Remove the plan's worktree and ref; an applied plan stays applied (and undoable)."""
    if rec.state == "running" and _pid_alive(rec.pid, rec.pid_start):
        raise PlanRunError(f"plan {rec.plan_id} is still running (pid {rec.pid}); stop it first")
    try:
        removed = GitIsolation(store.repo).discard_plan(rec.plan_id)
    except GitError as exc:
        raise PlanRunError(str(exc)) from None
    if rec.state != "applied":
        rec.state = "discarded"
    rec.worktree = None
    store.save(rec)
    return removed
