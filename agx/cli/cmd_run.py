"""`agx run`, `agx apply`, `agx discard`, `agx undo`, `agx plans`: plans executed in isolation.

`agx run "request"` plans with Delta (tasks stream into the executor as they are generated),
asks for approval, runs the DAG in a git worktree whose commits are kept on refs/agx/<plan-id>
(outside refs/heads, so `git push --all` never publishes them), and prints a
summary. Nothing in the user's checkout changes until `agx apply`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
from pathlib import Path

from agx.cli.context import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliContext, CliError


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="plan a request with Delta and run it in an isolated git worktree",
        description="Plan REQUEST (or run a hand-written plan with --plan), ask for approval, run the task DAG "
        "in .agx/worktrees/<plan-id> (its commits on ref refs/agx/<plan-id>), and print a summary. Your files are not "
        "touched: review with git, then `agx apply` or `agx discard`. Exit 0 only if every task succeeded.",
    )
    p.add_argument("request", nargs="*", help="what to do")
    p.add_argument("--plan", metavar="FILE", help="run this plan JSON instead of asking Delta for one")
    p.add_argument("--yes", "-y", action="store_true", help="approve every task (writes and commands too)")
    p.add_argument("--auto", choices=["read"], help="approve read-only tasks automatically; ask for the rest")
    p.add_argument("--max-parallel", type=int, metavar="N", help="tasks running at once (default: execution.max_parallel)")
    p.add_argument("--timeout", type=float, metavar="S", help="per-task timeout in seconds (default: execution.task_timeout_s)")
    p.add_argument("--show-output", action="store_true", help="print the tasks' output as it comes")
    p.add_argument("--json", action="store_true", help="write the session's events as JSON Lines on stdout "
                   "(final summary last; schema in README); needs --yes or --auto read")
    p.set_defaults(func=run)

    a = sub.add_parser("apply", help="bring a finished plan's changes into your branch",
                       description="Apply the changes of PLAN (default: the latest plan that finished) to your "
                       "checkout: one commit on your branch, or uncommitted changes when the files it touches had "
                       "uncommitted edits of yours. Refuses when you changed those files since the plan started.")
    a.add_argument("plan", nargs="?", help="plan id or unique prefix (see `agx plans`)")
    a.add_argument("--no-commit", action="store_true", help="write the files but do not commit")
    a.set_defaults(func=apply_cmd)

    d = sub.add_parser("discard", help="remove a plan's worktree and ref",
                       description="Remove the worktree .agx/worktrees/PLAN and the ref refs/agx/PLAN.")
    d.add_argument("plan", nargs="?", help="plan id or unique prefix (default: the latest unapplied plan)")
    d.set_defaults(func=discard_cmd)

    u = sub.add_parser("undo", help="revert the last `agx apply`",
                       description="Revert the most recently applied plan. Refuses when a file it touched has "
                       "changed since, or when you committed on top of its commit.")
    u.set_defaults(func=undo_cmd)

    ps = sub.add_parser("plans", help="list plans and their states")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    ps.set_defaults(func=plans_cmd)


# -- helpers ------------------------------------------------------------------------------
def _repo(ctx: CliContext) -> Path:
    repo = ctx.repo
    if repo is None:
        raise CliError("this command needs a git repository (agx runs plans in a git worktree); run `git init` first",
                       EXIT_USAGE)
    return repo


def _store(repo: Path):
    from agx.workspace.plan_store import PlanStore

    store = PlanStore(repo)
    for pid in store.recover_stale():
        print(f"agx: plan {pid} was interrupted (its process is gone); its worktree is kept — "
              f"inspect .agx/worktrees/{pid}, or `agx discard {pid}`", file=sys.stderr)
    return store


def load_plan_file(path: str, catalogue):
    """Read and validate a hand-written plan; CliError(exit 2) listing every problem."""
    from agx.planning.plan_file import PlanFileError, read_plan_json
    from agx.planning.validate import validate_plan

    try:
        data = read_plan_json(path)
    except PlanFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    report = validate_plan(data, catalogue)
    if report.errors or report.plan is None:
        listed = "\n".join(f"  - {e}" for e in report.errors) or "  - not a plan"
        raise CliError(f"{path}: invalid plan ({len(report.errors)} error{'s' if len(report.errors) != 1 else ''}):\n{listed}",
                       EXIT_USAGE)
    not_runnable = [t.id for t in report.plan.tasks if not catalogue.get(t.tool).runnable]
    if not_runnable:
        raise CliError(f"{path}: tasks {', '.join(not_runnable)} use tools agx cannot run", EXIT_USAGE)
    return report.plan


def _ask_line(prompt: str) -> str:
    """input() that returns '' on EOF (a closed terminal refuses rather than crashes)."""
    try:
        return input(prompt)
    except EOFError:
        return ""


async def _ask_in_thread(fn, *args):
    """Run a blocking prompt in a daemon thread, so Ctrl-C / a finished run need not wait for it."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def work():
        try:
            value = fn(*args)
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(value))
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting coroutine
            error = exc  # `exc` is unbound once the except block ends; the callback runs later
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(error))

    threading.Thread(target=work, daemon=True, name="agx-approval").start()
    return await fut


def _task_for_approval(node) -> str:
    """A task as the user approves it: id, risk, tool, title, then for writes and commands every
    argument in full (a long command wrapped, never cut: a redirect at its end must be seen)."""
    import shutil

    from agx.execution.printer import approval_details, visible
    from agx.planning.tools import Risk

    t = node.task
    head = f"  {t.id} [{node.risk.value}] {t.tool}: {visible(t.title)}"
    if node.risk is Risk.READ:
        return head
    width = max(40, shutil.get_terminal_size((100, 24)).columns - 6)
    return "\n".join([head, *("      " + line for line in approval_details(t.args, width))])


def _approval_dialogue(executor, catalogue, undecided: list[str]) -> tuple[list[str], list[str]]:
    """Ask on the terminal; returns (approved, denied)."""
    from agx.planning.tools import Risk

    nodes = [executor.nodes[i] for i in undecided]
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.risk.value] = counts.get(n.risk.value, 0) + 1
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"\n{len(nodes)} task{'s' if len(nodes) != 1 else ''} need approval ({kinds}):", flush=True)
    for n in nodes:
        print(_task_for_approval(n), flush=True)
    answer = _ask_line("Run them? [y]es all / [r]ead-only / [e]ach / [n]o: ").strip().lower()
    if answer in ("y", "yes", "a", "all"):
        return undecided, []
    if answer in ("r", "read"):
        ok = [n.task.id for n in nodes if n.risk is Risk.READ]
        return ok, [i for i in undecided if i not in ok]
    if answer in ("e", "each"):
        ok, no = [], []
        for n in nodes:
            print(_task_for_approval(n), flush=True)
            a = _ask_line(f"  run {n.task.id}? [y/N]: ").strip().lower()
            (ok if a in ("y", "yes") else no).append(n.task.id)
        return ok, no
    return [], undecided


# -- agx run ------------------------------------------------------------------------------
def run(ctx: CliContext) -> int:
    from agx.execution.plan_run import PlanRunError, abandon_run, finish_run, start_run
    from agx.execution.policy import ApprovalMode, Policy
    from agx.execution.printer import HeadlessPrinter, format_summary
    from agx.execution.runners import dirty_state
    from agx.execution.sandbox import probe as sandbox_probe
    from agx.execution.sandbox import unavailable_notice
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.tools import Risk
    from agx.workspace.plan_store import new_plan_id

    args = ctx.args
    repo = _repo(ctx)
    config = ctx.config
    from agx.cli.cmd_mcp import planning_catalogue  # built-in tools plus MCP servers' tools

    catalogue = planning_catalogue(ctx, builtin_catalogue(code=config.agent.code_tool), None if args.plan else " ".join(args.request).strip() or None)
    policy = Policy.from_flags(args.yes, args.auto)
    interactive = sys.stdin.isatty()
    if args.json and policy.mode is ApprovalMode.ASK:
        raise CliError("--json keeps stdout for events, so it cannot ask: pass --yes or --auto read", EXIT_USAGE)
    if policy.mode is ApprovalMode.ASK and not interactive:
        raise CliError("tasks need approval but stdin is not a terminal: pass --yes (approve all) or "
                       "--auto read (read-only tasks only)", EXIT_USAGE)
    # An explicit 0 is refused, not replaced by the default (`or` would do that silently).
    if args.max_parallel is not None and args.max_parallel < 1:
        raise CliError(f"--max-parallel must be at least 1 (got {args.max_parallel})", EXIT_USAGE)
    if args.timeout is not None and not (0 < args.timeout < float("inf")):
        raise CliError(f"--timeout must be a positive number of seconds (got {args.timeout:g})", EXIT_USAGE)
    max_parallel = args.max_parallel if args.max_parallel is not None else config.execution.max_parallel
    timeout = args.timeout if args.timeout is not None else config.execution.task_timeout_s

    plan = load_plan_file(args.plan, catalogue) if args.plan else None
    from agx.cli.textinput import clean_text
    from agx.workspace.git_isolation import display

    request = clean_text(" ".join(args.request)).strip()  # argv bytes that are not UTF-8: U+FFFD
    if plan is None and not request:
        raise CliError("nothing to do: give a request, or --plan FILE", EXIT_USAGE)
    request = request or plan.goal
    goal = plan.goal if plan else request

    _store(repo)  # reports plans interrupted by a dead process before starting another
    sandbox_note = unavailable_notice(config.execution.sandbox)
    if sandbox_note:
        print(f"agx: {sandbox_note}", file=sys.stderr)
    if plan is None or args.json:  # a request: the agent loop (plan, run, observe, replan) drives it
        from agx.cli.run_agent import run_agent

        before = dirty_state(repo)
        code = run_agent(ctx, request=request, plan=plan, catalogue=catalogue, policy=policy, interactive=interactive,
                         max_parallel=max_parallel, timeout=timeout, as_json=args.json, engine_or_none=_engine_or_none)
        outside = _changed_outside(repo, before)
        if outside:
            print(f"Changed in your checkout while the plan ran (outside its worktree, by a command or by you; "
                  f"agx cannot undo these): {', '.join(outside[:20])}" + (" …" if len(outside) > 20 else ""),
                  file=sys.stderr if args.json else sys.stdout)
        return code
    if plan is not None:  # Delta is not needed for a plan from a file: say so if it is unusable
        _engine_or_none(ctx, "delta", "not needed to run a plan from a file")
    echo_use = ("ask_model tasks will fail" if plan is None or any(t.tool == "ask_model" for t in plan.tasks)
                else "not needed by this plan")
    checkout_before = dirty_state(repo)  # to see what commands change outside the worktree
    try:
        prun = start_run(repo, new_plan_id(), request=request, goal=goal, plan={"goal": goal, "tasks": []},
                         catalogue=catalogue, policy=policy, engine=_engine_or_none(ctx, "echo", echo_use),
                         execution=config.execution, max_parallel=max_parallel, task_timeout_s=timeout,
                         code_engine=(_engine_or_none(ctx, "delta", "code tasks will fail")
                                      if plan is None or any(t.tool == "code" for t in plan.tasks) else None))
    except PlanRunError as exc:
        raise CliError(str(exc)) from None
    rec, executor, iso, snap = prun.record, prun.executor, prun.git, prun.snapshot
    plan_id = rec.plan_id
    print(f"agx: plan {plan_id} runs in {rec.worktree} (ref {rec.branch}); your files stay as they are", flush=True)
    if rec.excluded:
        print(f"agx: kept out of the plan (untracked files that look like secrets; its tasks do not see them and "
              f"no commit will hold them): {', '.join(map(display, rec.excluded))}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    executor.subscribe(HeadlessPrinter(show_output=args.show_output, t0=t0, show_added=plan is None))
    log = _session_log(repo)

    flags = {"signalled": False}  # set by the Ctrl-C / SIGTERM handler
    try:
        outcome = asyncio.run(_drive(ctx, executor, plan, request, catalogue, interactive, log, rec, prun.store, flags))
    except BaseException as exc:  # an agx bug: the record must not stay "running" with its worktree
        if rec.state == "running":
            rec.errors.append(f"agx stopped: {type(exc).__name__}: {exc}")
            if rec.tasks:
                finish_run(prun, None)  # tasks ran: keep the worktree to inspect
            else:
                abandon_run(prun, "failed", rec.errors)
        raise
    result, planned_errors = outcome
    if planned_errors is not None:  # planning failed or was interrupted: nothing ran
        abandon_run(prun, "cancelled" if flags["signalled"] else "failed", planned_errors)
        _log(log, "plan_outcome", plan_id=plan_id, state=rec.state, errors=planned_errors)
        return EXIT_INTERRUPTED if flags["signalled"] else EXIT_FAILURE

    finish_run(prun, result)
    ok = rec.state == "done"
    wall = time.perf_counter() - t0
    print()
    print(format_summary([executor.nodes[i] for i in executor._order], wall))
    commits = iso.commits_on_branch(plan_id, snap.commit)
    ran_commands = any(n.risk is Risk.EXEC and n.started is not None for n in executor.nodes.values())
    outside = _changed_outside(repo, checkout_before) if ran_commands else []
    unconfined = config.execution.sandbox.mode == "off" or not sandbox_probe().available
    if outside:
        print(f"Changed in your checkout while the plan ran (outside its worktree, by a command or by you; "
              f"agx cannot undo these): {', '.join(outside[:20])}" + (" …" if len(outside) > 20 else ""))
    if ok and not commits:
        iso.discard_plan(plan_id)
        rec.worktree = None
        if ran_commands and (outside or unconfined):
            print("No files changed in the worktree; the worktree and branch were removed."
                  + ("" if outside else " Commands ran without a sandbox: agx cannot see what they wrote "
                     "outside your repository (your checkout is unchanged)."))
        else:
            print("No files changed; the worktree and branch were removed.")
    elif commits:
        files = iso.changed_paths(snap.commit, commits[-1])
        print(f"{len(files)} file{'s' if len(files) != 1 else ''} changed in {len(commits)} commit"
              f"{'s' if len(commits) != 1 else ''} on {rec.branch}. Review: git diff {snap.commit[:10]} {rec.branch}")
        print(f"Then: agx apply {plan_id}   or   agx discard {plan_id}")
    else:
        print(f"Nothing changed. Inspect {rec.worktree}, or `agx discard {plan_id}`.")
    prun.store.save(rec)
    _log(log, "plan_outcome", plan_id=plan_id, state=rec.state, wall_s=round(wall, 3),
         task_s=rec.task_s, commits=commits, tasks=rec.tasks)
    if ok:
        return EXIT_OK
    return EXIT_INTERRUPTED if flags["signalled"] else EXIT_FAILURE


def _engine_or_none(ctx: CliContext, role: str, consequence: str):
    """The role's engine, or None after saying once why it is unusable and what that means."""
    from agx.runtime.engine import EngineError

    try:
        return ctx.pool.engine(role)
    except EngineError as exc:
        print(f"agx: note: {exc} ({role}: {consequence})", file=sys.stderr)
        return None  # ask_model tasks then fail with "no model available"


def _changed_outside(repo: Path, before) -> list[str]:
    """Files of the user's checkout whose state changed since `before` (a dirty_state)."""
    from agx.execution.runners import changed_between, dirty_state

    return [p for p in changed_between(before, dirty_state(repo)) or [] if not p.startswith(".agx/")]


def _session_log(repo: Path):
    from agx.workspace.sessionlog import SessionLog

    try:
        return SessionLog.open(repo)
    except OSError:
        return None


def _log(log, kind: str, **fields) -> None:
    """Append to the session log; a log that cannot be written never stops a run."""
    if log is not None:
        try:
            log.append(kind, **fields)
        except Exception as exc:  # noqa: BLE001 - OSError (disk full), or a bug in what is logged
            print(f"agx: session log not written ({type(exc).__name__}: {exc})", file=sys.stderr)


async def _drive(ctx, executor, plan, request, catalogue, interactive, log, rec, store, flags):
    """Plan (streaming tasks into the executor), ask for approval, run. Returns (result, errors)."""
    from pydantic import ValidationError

    from agx import events as ev
    from agx.execution.printer import format_plan
    from agx.planning.plan import Task
    from agx.runtime.engine import CancelToken

    loop = asyncio.get_running_loop()
    cancel_token = CancelToken()

    def on_signal():
        flags["signalled"] = True
        cancel_token.cancel()
        executor.cancel_all()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):
            pass

    run_task = asyncio.ensure_future(executor.run())
    await asyncio.sleep(0)  # let run() bind the loop before tasks arrive

    if plan is None:
        from agx.planning.planner import Planner

        ctx.warn_if_tiny("delta")
        planner = Planner(ctx.pool.engine("delta"), catalogue, repo_dir=executor.workdir,
                          repair_rounds=ctx.config.execution.repair_rounds)

        def forward(event):
            if isinstance(event, ev.TaskAdded):
                try:
                    executor.add_task(Task.model_validate(event.task))
                except ValidationError:
                    pass  # a malformed streamed task: the validated final plan decides
            elif isinstance(event, ev.PlanningStarted):
                print(f"agx: Delta is planning: {event.request}", flush=True)

        result = await asyncio.to_thread(planner.plan, request, forward, cancel_token, executor.plan_id)
        _log(log, "plan", **result.to_record())
        if result.plan is not None:
            rec.plan = result.plan.model_dump()
        if not result.ok:
            if result.plan is not None:
                print(format_plan(result.plan, catalogue, result.errors), flush=True)
            print(f"agx: no valid plan after {result.rounds} repair round{'s' if result.rounds != 1 else ''}:",
                  file=sys.stderr)
            for e in result.errors:
                print(f"  - {e}", file=sys.stderr)
            executor.cancel_all()
            await run_task
            return None, list(result.errors)
        plan = result.plan
        executor.sync_plan(plan)
        print(format_plan(plan, catalogue), flush=True)
    else:
        _log(log, "plan", plan_id=executor.plan_id, request=request, plan=plan.model_dump(), errors=[], source="file")
        print(format_plan(plan, catalogue), flush=True)
        executor.add_plan(plan)
    rec.plan = plan.model_dump()
    rec.goal = plan.goal
    store.save(rec)
    executor.close_plan()

    from agx.execution.policy import decide_while_running

    undecided = executor.undecided()
    if undecided and not run_task.done() and not interactive:
        print(f"agx: not approved (no terminal to ask): {', '.join(undecided)}", file=sys.stderr)
    await decide_while_running(executor, run_task, (lambda ids: _ask_in_thread(_approval_dialogue, executor, catalogue, ids))
                               if interactive else None)
    try:
        result = await run_task
    except asyncio.CancelledError:
        return None, None
    return result, None


# -- apply / discard / undo / plans -------------------------------------------------------
def apply_cmd(ctx: CliContext) -> int:
    from agx.execution.plan_run import PlanRunError, apply_plan
    from agx.workspace.plan_store import PlanStoreError

    repo = _repo(ctx)
    store = _store(repo)
    try:
        rec = store.resolve(ctx.args.plan, states=("done",), what="finished plan to apply")
    except PlanStoreError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if rec.state in ("failed", "cancelled", "interrupted"):
        print(f"agx: note: plan {rec.plan_id} {rec.state}; applying what its finished tasks committed", file=sys.stderr)
    try:
        apply_plan(store, rec, commit=not ctx.args.no_commit)
    except PlanRunError as exc:
        raise CliError(str(exc).replace("(undo reverts it)", "(`agx undo` reverts it)")) from None
    applied = rec.applied
    n = len(applied["files"])
    from agx.workspace.git_isolation import display

    files = ", ".join(display(f["path"]) for f in applied["files"][:6]) + (" …" if n > 6 else "")
    if applied["mode"] == "commit":
        print(f"applied plan {rec.plan_id}: {n} file{'s' if n != 1 else ''} ({files}) in commit {applied['commit'][:10]}")
    else:
        why = "as asked" if ctx.args.no_commit else "because those files had uncommitted changes of yours"
        print(f"applied plan {rec.plan_id}: {n} file{'s' if n != 1 else ''} ({files}) left uncommitted ({why})")
    print("`agx undo` reverts it.")
    return EXIT_OK


def discard_cmd(ctx: CliContext) -> int:
    from agx.execution.plan_run import PlanRunError, discard_plan
    from agx.workspace.plan_store import FINISHED_STATES, PlanStoreError

    repo = _repo(ctx)
    store = _store(repo)
    try:
        rec = store.resolve(ctx.args.plan, states=FINISHED_STATES + ("planned", "applied", "undone"),
                            what="plan to discard")
    except PlanStoreError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        removed = discard_plan(store, rec)
    except PlanRunError as exc:
        raise CliError(str(exc)) from None
    print(f"discarded plan {rec.plan_id}: removed {', '.join(removed) if removed else 'nothing (already gone)'}")
    return EXIT_OK


def undo_cmd(ctx: CliContext) -> int:
    from agx.execution.plan_run import PlanRunError, latest_applied, undo_plan

    repo = _repo(ctx)
    store = _store(repo)
    rec = latest_applied(store)
    if rec is None:
        raise CliError("nothing to undo: no applied plan (see `agx plans`)", EXIT_USAGE)
    try:
        undo_plan(store, rec)
    except PlanRunError as exc:
        raise CliError(str(exc)) from None
    n = len(rec.applied["files"])
    print(f"undid plan {rec.plan_id}: {n} file{'s' if n != 1 else ''} restored"
          + (f", commit {rec.applied['commit'][:10]} removed from your branch" if rec.applied["mode"] == "commit" else ""))
    return EXIT_OK


def plans_cmd(ctx: CliContext) -> int:
    repo = _repo(ctx)
    store = _store(repo)
    recs = store.all()
    if ctx.args.json:
        print(json.dumps([{"plan_id": r.plan_id, "state": r.state, "goal": r.goal, "created_at": r.created_at,
                           "branch": r.branch, "worktree": r.worktree,
                           "tasks": {k: v.get("status") for k, v in r.tasks.items()}} for r in recs], indent=1))
        return EXIT_OK
    if not recs:
        print("no plans yet (`agx run \"...\"` makes one)")
        return EXIT_OK
    print(f"{'plan':<22} {'state':<11} {'tasks':<9} {'created':<16} goal")
    for r in recs:
        ok = sum(1 for t in r.tasks.values() if t.get("status") == "succeeded")
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        goal = r.goal if len(r.goal) <= 60 else r.goal[:59] + "…"
        print(f"{r.plan_id:<22} {r.state:<11} {f'{ok}/{len(r.tasks)} ok':<9} {created:<16} {goal}")
    return EXIT_OK
