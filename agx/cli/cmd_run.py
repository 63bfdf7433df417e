"""`agx run`, `agx apply`, `agx discard`, `agx undo`, `agx plans`: plans executed in isolation.

`agx run "request"` plans with Delta (tasks stream into the executor as they are generated),
asks for approval, runs the DAG in a git worktree whose commits are kept on refs/agx/<plan-id>
(outside refs/heads, so `git push --all` never publishes them), and prints a
summary. Nothing in the user's checkout changes until `agx apply`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

from agx.cli.context import EXIT_OK, EXIT_USAGE, CliContext, CliError


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
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.execution.policy import ApprovalMode, Policy
    from agx.execution.sandbox import unavailable_notice

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

    request = clean_text(" ".join(args.request)).strip()  # argv bytes that are not UTF-8: U+FFFD
    if plan is None and not request:
        raise CliError("nothing to do: give a request, or --plan FILE", EXIT_USAGE)
    request = request or plan.goal

    _store(repo)  # reports plans interrupted by a dead process before starting another
    sandbox_note = unavailable_notice(config.execution.sandbox)
    if sandbox_note:
        print(f"agx: {sandbox_note}", file=sys.stderr)
    from agx.cli.run_agent import run_agent  # the agent loop (plan or file → run → observe → report)

    return run_agent(ctx, request=request, plan=plan, catalogue=catalogue, policy=policy, interactive=interactive,
                     max_parallel=max_parallel, timeout=timeout, as_json=args.json, engine_or_none=_engine_or_none)


def _engine_or_none(ctx: CliContext, role: str, consequence: str):
    """The role's engine, or None after saying once why it is unusable and what that means."""
    from agx.runtime.engine import EngineError

    try:
        return ctx.pool.engine(role)
    except EngineError as exc:
        print(f"agx: note: {exc} ({role}: {consequence})", file=sys.stderr)
        return None  # ask_model tasks then fail with "no model available"


def _session_log(repo: Path):
    from agx.workspace.sessionlog import SessionLog

    try:
        return SessionLog.open(repo)
    except OSError:
        return None


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
