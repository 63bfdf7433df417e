"""The agent loop: plan -> approve -> run -> observe -> replan, on one plan branch, then report.

    session = AgentSession(repo, config, catalogue=cat, policy=policy, delta=delta, echo=echo,
                           approve=ask_user, on_event=show)
    outcome = await session.run("make the tests pass")

Round 1 plans the request; Delta's tasks stream into the executor as they close. After each
round the session observes: failed tasks (their error and output, trimmed to
`agent.observe_chars`) and, when the round committed changes, the project's tests (a
`run_tests` task, approved by the same policy). If the goal is not met, Delta is asked for a
follow-up plan that continues in the same worktree (its tasks see the earlier commits; their ids
get an `r<round>-` prefix so records never collide), up to `agent.max_rounds`. The loop ends on
success (done), the round limit (round_limit), the user's stop or refusal (stopped), Delta
failing to make or change a follow-up plan (gave_up), a first plan that never validated
(planning_failed) — and always with a SessionFinished event carrying the summary.

Front ends supply `approve(executor, task_ids) -> (approved, denied)` (async) and `on_event`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from agx import events as ev
from agx.agent.events import RoundObserved, RoundStarted, SessionFinished
from agx.execution.executor import Executor, RunResult, Status
from agx.execution.plan_run import PlanRun, abandon_run, finish_run, start_run
from agx.execution.policy import Policy, decide_while_running
from agx.execution.sandbox import probe as sandbox_probe
from agx.execution.runners import detect_test_command
from agx.planning.plan import PLACEHOLDER_RE, Plan, Task
from agx.planning.tools import Risk, ToolCatalogue
from agx.workspace.plan_store import PlanRecorder, new_plan_id
from agx.workspace.worktree_state import changed_between, dirty_state
from agx.workspace.processes import TOKEN_ENV

Approver = Callable[[Executor, list[str]], Awaitable[tuple[list[str], list[str]]]]

REASONS = ("done", "round_limit", "stopped", "gave_up", "planning_failed")


@dataclass
class SessionOutcome:
    plan_id: str | None
    reason: str
    rounds: int
    summary: dict[str, Any]
    last_result: RunResult | None = None
    executors: list[Executor] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason == "done"


def _tail(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def _rename(value: Any, ids: dict[str, str]) -> Any:
    """`${t1}` -> `${r2-t1}` inside any argument value."""
    if isinstance(value, str):
        return PLACEHOLDER_RE.sub(lambda m: "${" + ids.get(m.group(1), m.group(1)) + "}", value)
    if isinstance(value, list):
        return [_rename(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _rename(v, ids) for k, v in value.items()}
    return value


def prefix_task(task: Task, prefix: str, known: set[str] | None = None) -> Task:
    if not prefix:
        return task
    ids = {d: prefix + d for d in (*task.deps, task.id)} | {i: prefix + i for i in (known or ())}
    return Task(id=prefix + task.id, title=task.title, tool=task.tool, deps=[prefix + d for d in task.deps],
                args=_rename(task.args, ids))


def prefix_plan(plan: Plan, prefix: str) -> Plan:
    if not prefix:
        return plan
    known = {t.id for t in plan.tasks}
    return Plan(goal=plan.goal, tasks=[prefix_task(t, prefix, known) for t in plan.tasks])


def _signature(plan: Plan) -> list[tuple]:
    return [(t.tool, repr(t.args)) for t in plan.tasks]


class AgentSession:
    def __init__(self, repo: Path, config, *, catalogue: ToolCatalogue, policy: Policy, delta=None, echo=None,
                 approve: Approver | None = None, on_event: Callable[[ev.PlanEvent], Any] | None = None,
                 planner=None, max_rounds: int | None = None, max_parallel: int | None = None,
                 task_timeout_s: float | None = None, log=None, keep_empty: bool = False,
                 observe_tests: bool = True):
        self.repo = Path(repo)
        self.config = config
        self.catalogue = catalogue
        self.policy = policy
        self.delta = delta
        self.echo = echo
        self.approve = approve
        self.on_event = on_event or (lambda e: None)
        self.max_rounds = max_rounds or config.agent.max_rounds
        self.max_parallel = max_parallel or config.execution.max_parallel
        self.task_timeout_s = task_timeout_s or config.execution.task_timeout_s
        self.log = log
        self.keep_empty = keep_empty  # keep a worktree with no commits (the shell discards on request)
        self.observe_tests = observe_tests  # False: a plan from a file ran what it meant to; no extra test run
        self._planner = planner
        self._stopped = False
        self._checkout_before = None
        self._removed_empty = False
        self._baseline: asyncio.Future | None = None
        self._tests_before_result: dict[str, Any] | None = None
        self._all_executors: list[Executor] = []
        self._cancel = None
        self.round_executor: Executor | None = None  # the current round's
        self.run_handle: PlanRun | None = None

    # -- control ----------------------------------------------------------------------------
    def stop(self) -> None:
        """End the loop now (any thread): planning is cancelled, running tasks are killed."""
        self._stopped = True
        if self._cancel is not None:
            self._cancel.cancel()
        for ex in self._all_executors:  # every round's and test run's (the one running now among them)
            ex.cancel_all()

    def revise_plan(self, plan: dict) -> list[str]:
        """The user's edit of round 1's plan while it waits for approval (the shell's e and d keys):
        validated, then the executor and the record take it. Returns the errors (nothing changed)."""
        from agx.planning.validate import validate_plan

        report = validate_plan(plan, self.catalogue)
        if report.errors or report.plan is None or self.round_executor is None or self.run_handle is None:
            return list(report.errors) or ["no plan is waiting for approval"]
        self.round_executor.sync_plan(report.plan)
        rec = self.run_handle.record
        rec.plan, rec.goal = report.plan.model_dump(), report.plan.goal
        kept = {t.id for t in report.plan.tasks}
        for tid in [t for t in rec.tasks if t not in kept]:  # deleted in review: never ran
            del rec.tasks[tid]
        self.run_handle.store.save(rec)
        return []

    @property
    def stopped(self) -> bool:
        return self._stopped

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, request: str, plan: Plan | None = None, plan_id: str | None = None) -> SessionOutcome:
        """Run the loop for `request` (round 1 runs `plan` instead of asking Delta, when given)."""
        from agx.runtime.engine import CancelToken

        self._cancel = CancelToken()
        plan_id = plan_id or new_plan_id()
        goal = plan.goal if plan is not None else request
        # What the user's checkout looks like now: commands that escape the worktree are named after.
        self._checkout_before = await asyncio.to_thread(dirty_state, self.repo)
        prun = await asyncio.to_thread(
            start_run, self.repo, plan_id, request=request, goal=goal, plan={"goal": goal, "tasks": []},
            catalogue=self.catalogue, policy=self.policy, engine=self.echo, execution=self.config.execution,
            max_parallel=self.max_parallel, task_timeout_s=self.task_timeout_s, code_engine=self.delta)
        self.run_handle = prun
        try:
            return await self._loop(prun, request, plan)
        except BaseException as exc:  # an agx bug or a hard stop: the record must not stay "running"
            await self._settle_baseline()
            rec = prun.record
            if rec.state == "running":
                rec.errors.append(f"agx stopped: {type(exc).__name__}: {exc}")
                if rec.tasks:
                    await asyncio.to_thread(finish_run, prun, None)  # tasks ran: keep the worktree to inspect
                else:
                    await asyncio.to_thread(abandon_run, prun, "failed", rec.errors)
            raise

    async def _loop(self, prun: PlanRun, request: str, plan: Plan | None) -> SessionOutcome:
        plan_id = prun.record.plan_id
        executors: list[Executor] = []
        self._all_executors = []  # rounds' and test runs': whether commands ran
        observed: list[RoundObserved] = []
        round_request, reason, result, previous = request, "round_limit", None, None
        base_commits = 0
        rnd = 0
        # Baseline tests run while Delta plans; round 1's writes wait for them (see _plan_and_run).
        self._baseline = asyncio.ensure_future(self._tests_before(prun)) if self.observe_tests else None
        for rnd in range(1, self.max_rounds + 1):
            self._emit(RoundStarted(plan_id, round=rnd, request=round_request))
            executor = prun.executor if rnd == 1 else self._next_executor(prun)
            prun.executor = executor
            self.round_executor = executor
            executors.append(executor)
            self._all_executors.append(executor)
            result, errors, this_plan = await self._plan_and_run(prun, executor, round_request, rnd,
                                                                 plan if rnd == 1 else None, previous)
            if errors is not None:
                reason = "stopped" if self._stopped else ("planning_failed" if rnd == 1 else "gave_up")
                if rnd == 1:
                    await self._settle_baseline()  # before its worktree goes
                    await asyncio.to_thread(abandon_run, prun, "cancelled" if self._stopped else "failed", errors)
                    summary = self._summary(prun, reason, rnd, observed, errors)
                    self._finish(prun, reason, summary)
                    return SessionOutcome(plan_id, reason, rnd, summary, None, executors)
                rnd -= 1  # the round that never ran does not count
                break
            previous = this_plan
            obs = await self._observe(prun, executor, rnd, base_commits)
            base_commits += obs.commits
            observed.append(obs)
            self._emit(obs)
            if self._stopped or any(n.status is Status.SKIPPED and n.error == "not approved"
                                    for n in executor.nodes.values()):
                reason = "stopped"
                break
            if obs.ok:
                reason = "done"
                break
            if rnd == self.max_rounds:
                reason = "round_limit"
                break
            round_request = self._follow_up(request, obs, rnd + 1)
        rec = await asyncio.to_thread(finish_run, prun, result)
        rec.state = "done" if reason == "done" else ("cancelled" if reason == "stopped" else "failed")
        await asyncio.to_thread(self._cleanup, prun, reason)
        summary = self._summary(prun, reason, max(rnd, 1), observed, [])
        self._finish(prun, reason, summary)
        return SessionOutcome(plan_id, reason, max(rnd, 1), summary, result, executors)

    def _emit(self, event: ev.PlanEvent) -> None:
        try:
            self.on_event(event)
        except Exception:  # a broken viewer never stops the loop
            pass

    def _next_executor(self, prun: PlanRun) -> Executor:
        rec, cfg = prun.record, self.config.execution
        ex = Executor(rec.plan_id, self.catalogue, prun.worktree, max_parallel=self.max_parallel,
                      task_timeout_s=self.task_timeout_s, output_cap_bytes=cfg.output_cap_bytes, policy=self.policy,
                      engine=self.echo, code_engine=self.delta, committer=prun.git.committer(prun.worktree, rec.plan_id),
                      test_command=cfg.test_command, process_env={TOKEN_ENV: rec.run_token}, sandbox=cfg.sandbox)
        ex.subscribe(PlanRecorder(prun.store, rec))
        return ex

    def _planner_for(self, workdir: Path):
        if self._planner is not None:
            return self._planner
        from agx.planning.planner import Planner

        return Planner(self.delta, self.catalogue, repo_dir=workdir, repair_rounds=self.config.execution.repair_rounds)

    async def _plan_and_run(self, prun: PlanRun, executor: Executor, request: str, rnd: int, given: Plan | None,
                            previous: Plan | None) -> tuple[RunResult | None, list[str] | None, Plan | None]:
        """Plan (tasks streaming into the executor), approve, run. Errors (not None) when no plan ran."""
        from pydantic import ValidationError

        executor.subscribe(self.on_event)
        prefix = "" if rnd == 1 else f"r{rnd}-"
        run_task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0)  # let run() bind the loop before tasks arrive
        rec = prun.record
        if given is None:
            planner = self._planner_for(executor.workdir)

            def forward(event):
                if isinstance(event, ev.TaskAdded):
                    try:
                        executor.add_task(prefix_task(Task.model_validate(event.task), prefix))
                    except ValidationError:
                        pass  # a malformed streamed task: the validated final plan decides
                elif isinstance(event, ev.Planned) and prefix and event.plan:
                    try:  # the plan as it will run: ids with the round's prefix
                        plan = prefix_plan(Plan.model_validate(event.plan), prefix).model_dump()
                    except ValidationError:
                        plan = event.plan
                    self._emit(dataclasses.replace(event, plan=plan))
                elif isinstance(event, (ev.PlanningStarted, ev.Planned)):
                    self._emit(event)

            result = await asyncio.to_thread(planner.plan, request, forward, self._cancel, executor.plan_id)
            self._log("plan", round=rnd, **result.to_record())
            problem = None
            if self._stopped:
                problem = ["stopped by the user"]
            elif not result.ok or result.plan is None:
                problem = list(result.errors) or ["no valid plan"]
            elif previous is not None and _signature(result.plan) == _signature(previous):
                problem = ["Delta proposed the same plan again"]
            if problem is not None:
                executor.sync_plan(Plan(goal=rec.goal, tasks=[]))  # drop what streamed in
                executor.cancel_all()
                await run_task
                return None, problem, None
            plan = prefix_plan(result.plan, prefix)
            executor.sync_plan(plan)
        else:
            plan = given
            self._log("plan", round=rnd, plan_id=executor.plan_id, request=request, plan=plan.model_dump(),
                      errors=[], source="file")
            # Shown as Delta's plans are, before its tasks start (printing a big plan is not run time).
            self._emit(ev.Planned(executor.plan_id, plan=plan.model_dump()))
            executor.add_plan(plan)
        if rnd == 1:
            rec.plan = plan.model_dump()
            rec.goal = plan.goal
        prun.store.save(rec)
        if rnd == 1 and self._baseline is not None:
            self._tests_before_result = await self._baseline  # writes and commands must not change what it sees
        executor.close_plan()
        await self._approve(executor, run_task)
        try:
            return await run_task, None, plan
        except asyncio.CancelledError:
            return None, ["stopped by the user"], plan

    async def _approve(self, executor: Executor, run_task: asyncio.Future) -> None:
        ask = None if self.approve is None else (lambda ids: self.approve(executor, ids))
        await decide_while_running(executor, run_task, ask)

    async def _observe(self, prun: PlanRun, executor: Executor, rnd: int, base_commits: int) -> RoundObserved:
        limit = self.config.agent.observe_chars
        failed = [{"task": n.task.id, "tool": n.task.tool, "error": n.error or n.status.value,
                   "output": _tail(n.output, limit)}
                  for n in executor.nodes.values() if n.status in (Status.FAILED, Status.CANCELLED)]
        commits = len(await asyncio.to_thread(prun.git.commits_on_branch, prun.record.plan_id, prun.snapshot.commit))
        new_commits = commits - base_commits
        tests = None
        project = self.config.execution.test_command or await asyncio.to_thread(detect_test_command, prun.worktree)
        # The plan's own run_tests counts only when it ran the project's tests (no command of its
        # own, or the same one): a model's `echo ok` is not evidence that the goal is met.
        ran_tests = [n for n in executor.nodes.values() if n.task.tool == "run_tests" and n.started is not None
                     and (not project or (n.task.args.get("command") or "").strip() in ("", project.strip()))]
        if ran_tests:  # the plan ran the tests itself: their last run is the observation
            last = max(ran_tests, key=lambda n: n.started or 0)
            tests = {"command": last.task.args.get("command") or "", "ok": last.status is Status.SUCCEEDED,
                     "output": _tail(last.output, limit), "by": last.task.id}
        elif (new_commits or (project and any(n.task.tool == "run_tests" for n in executor.nodes.values()))) \
                and self.observe_tests and not self._stopped:
            tests = await self._run_tests(prun, rnd, command=project)
        all_ok = bool(executor.nodes) and all(n.status is Status.SUCCEEDED for n in executor.nodes.values())
        ok = all_ok and (tests is None or tests["ok"])
        return RoundObserved(prun.record.plan_id, round=rnd, ok=ok, failed=failed, tests=tests, commits=new_commits)

    async def _settle_baseline(self) -> None:
        """Stop the tests-before run if it is still going (nothing will use it) and wait for it."""
        if self._baseline is not None and not self._baseline.done():
            self._baseline.cancel()
        if self._baseline is not None:
            await asyncio.gather(self._baseline, return_exceptions=True)

    async def _tests_before(self, prun: PlanRun) -> dict[str, Any] | None:
        """The tests before any change (agent.tests_before), for the report's before/after."""
        mode = self.config.agent.tests_before
        spec = self.catalogue.get("run_tests")
        probe_task = Task(id="r0-tests", title="tests before", tool="run_tests", args={}, deps=[])
        if mode == "off" or spec is None or (mode == "auto" and not self.policy.auto_approves(probe_task, spec)):
            return None
        return await self._run_tests(prun, 0, "Run the project's tests before any change (for the before/after report)")

    async def _run_tests(self, prun: PlanRun, rnd: int, title: str = "Run the project's tests (agx observes the round)",
                         command: str | None = None) -> dict[str, Any] | None:
        """The project's tests in the worktree, as a run_tests task under the same approval policy.
        `command`: the project's test command when the caller has already looked it up."""
        cfg = self.config.execution
        command = command or cfg.test_command or await asyncio.to_thread(detect_test_command, prun.worktree)
        if not command or self.catalogue.get("run_tests") is None:
            return None
        ex = Executor(prun.record.plan_id, self.catalogue, prun.worktree, max_parallel=1,
                      task_timeout_s=self.task_timeout_s, output_cap_bytes=cfg.output_cap_bytes, policy=self.policy,
                      test_command=command, process_env={TOKEN_ENV: prun.record.run_token}, sandbox=cfg.sandbox)
        ex.subscribe(self.on_event)
        self._all_executors.append(ex)
        tid = f"r{rnd}-tests"
        run_task = asyncio.ensure_future(ex.run())
        await asyncio.sleep(0)
        ex.add_task(Task(id=tid, title=title, tool="run_tests", args={}, deps=[]))
        ex.close_plan()
        await self._approve(ex, run_task)
        await run_task
        node = ex.nodes[tid]
        if node.status is Status.SKIPPED:
            return None  # not approved: nothing observed
        return {"command": command, "ok": node.status is Status.SUCCEEDED,
                "output": _tail(node.output, self.config.agent.observe_chars), "by": tid}

    def _follow_up(self, request: str, obs: RoundObserved, rnd: int) -> str:
        lines = [request.strip(), "",
                 f"Round {rnd} of at most {self.max_rounds}. An earlier plan already ran in this repository; its "
                 "commits are in place (the files show its changes). It did not reach the goal:"]
        for f in obs.failed:
            lines.append(f"- task {f['task']} ({f['tool']}) failed: {f['error']}")
            if f["output"]:
                lines.append(f"  its output:\n{f['output']}")
        if obs.tests is not None and not obs.tests["ok"]:
            lines.append(f"- the tests fail ({obs.tests['command'] or 'run_tests'}):\n{obs.tests['output']}")
            if self._tests_before_result is not None:
                lines.append("  (before this request they " + ("passed" if self._tests_before_result["ok"]
                                                               else "failed too") + ")")
        lines.append("Plan only the remaining work. Use code to change files (it sees their current text).")
        return "\n".join(lines)

    def _cleanup(self, prun: PlanRun, reason: str) -> None:
        rec = prun.record
        if not self.keep_empty and reason == "done" and not prun.git.commits_on_branch(rec.plan_id, prun.snapshot.commit):
            prun.git.discard_plan(rec.plan_id)  # nothing changed: no worktree or ref to review
            rec.worktree = None
            rec.branch = None
            self._removed_empty = True
        prun.store.save(rec)

    def _summary(self, prun: PlanRun, reason: str, rounds: int, observed: list[RoundObserved],
                 errors: list[str]) -> dict[str, Any]:
        rec = prun.record
        commits = prun.git.commits_on_branch(rec.plan_id, prun.snapshot.commit) if rec.branch else []
        files = []
        if commits:
            files = [{"path": path, "change": {"A": "added", "D": "deleted"}.get(status, "modified")}
                     for status, path in prun.git.changed_paths(prun.snapshot.commit, commits[-1])]
        last = observed[-1] if observed else None
        ran_commands = any(n.risk is Risk.EXEC and n.started is not None
                           for ex in self._all_executors for n in ex.nodes.values())
        outside = [p for p in changed_between(self._checkout_before, dirty_state(self.repo)) or []
                   if not p.startswith(".agx/")] if ran_commands else []
        unconfined = ran_commands and (self.config.execution.sandbox.mode == "off" or not sandbox_probe().available)
        return {
            "plan_id": rec.plan_id, "request": rec.request, "reason": reason, "ok": reason == "done",
            "rounds": rounds, "max_rounds": self.max_rounds, "files": files, "commits": len(commits),
            "tests": [{"round": o.round, **{k: v for k, v in o.tests.items() if k != "output"}}
                      for o in observed if o.tests is not None],
            "failed": [{k: v for k, v in f.items() if k != "output"} for f in (last.failed if last else [])],
            "errors": list(errors),
            "branch": rec.branch if commits else None, "worktree": rec.worktree if commits else None,
            "base_commit": prun.snapshot.commit,
            "apply": f"agx apply {rec.plan_id}" if commits else None,
            "discard": f"agx discard {rec.plan_id}" if rec.worktree else None,
            "tests_before": ({k: v for k, v in self._tests_before_result.items() if k != "output"}
                             if self._tests_before_result else None),
            "worktree_removed": self._removed_empty,
            "changed_outside": outside,  # the user's checkout, changed by a command while the plan ran
            "unconfined_commands": unconfined,
        }

    def _finish(self, prun: PlanRun, reason: str, summary: dict[str, Any]) -> None:
        self._log("plan_outcome", plan_id=prun.record.plan_id, state=prun.record.state, reason=reason,
                  rounds=summary["rounds"], commits=summary["commits"], tasks=prun.record.tasks)
        self._emit(SessionFinished(prun.record.plan_id, reason=reason, summary=summary))

    def _log(self, kind: str, **fields) -> None:
        if self.log is not None:
            try:
                self.log.append(kind, **fields)
            except Exception:  # a log that cannot be written never stops a request
                pass


REASON_WORDS = {
    "done": "goal met",
    "round_limit": "stopped at the round limit",
    "stopped": "stopped by you",
    "gave_up": "Delta could not make a better follow-up plan",
    "planning_failed": "no valid plan",
}


def summary_text(s: dict[str, Any]) -> str:
    """The report both front ends print (Echo's summary is made from the same record)."""
    out = [f"{REASON_WORDS.get(s['reason'], s['reason'])} after {s['rounds']} round{'s' if s['rounds'] != 1 else ''}"
           f" (plan {s['plan_id']})."]
    if s["files"]:
        out.append("Changed: " + ", ".join(f"{f['path']} ({f['change']})" for f in s["files"]))
    before = s.get("tests_before")
    if before:
        out.append(f"Tests before: {'pass' if before['ok'] else 'FAIL'}" + (f" ({before['command']})" if before.get("command") else ""))
    for t in s["tests"]:
        out.append(f"Tests after round {t['round']}: {'pass' if t['ok'] else 'FAIL'}" + (f" ({t['command']})" if t.get("command") else ""))
    for f in s["failed"]:
        out.append(f"Failed: {f['task']} ({f['tool']}): {f['error'][:200]}")
    for e in s["errors"][:5]:
        out.append(f"  - {e}")
    if s["apply"]:
        out.append(f"Branch {s['branch']}. Review: git diff {s['base_commit'][:10]} {s['branch']}; then {s['apply']}   or   {s['discard']}")
    elif s["discard"]:
        out.append(f"Nothing committed. Inspect {s['worktree'] or 'the worktree'}, or {s['discard']}")
    outside = s.get("changed_outside") or []
    if s.get("worktree_removed"):
        if outside or s.get("unconfined_commands"):
            out.append("No files changed in the worktree; the worktree and branch were removed."
                       + ("" if outside else " Commands ran without a sandbox: agx cannot see what they wrote "
                          "outside your repository (your checkout is unchanged)."))
        else:
            out.append("No files changed; the worktree and branch were removed.")
    if outside:
        out.append("Changed in your checkout while the plan ran (outside its worktree, by a command or by you; agx "
                   f"cannot undo these): {', '.join(outside[:20])}" + (" …" if len(outside) > 20 else ""))
    return "\n".join(out)
