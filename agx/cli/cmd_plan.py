"""`agx plan "request"`: ask Delta for a task DAG and print it (levels, or JSON with --json)."""

from __future__ import annotations

import json
import sys

from agx.cli.context import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliContext, CliError


def register(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="ask Delta to plan a request as a DAG of tasks; prints it without running anything",
        description="Plan a request as a DAG of tasks over the tool catalogue and print it by "
        "levels (tasks in one level can run in parallel), with critical path and width. "
        "Exit 0 when the plan is valid, 1 when it is still invalid after repair rounds.",
    )
    p.add_argument("request", nargs="*", help="what to do (default: read stdin)")
    p.add_argument("--json", action="store_true", help="print only the plan as JSON")
    p.add_argument("--catalogue", metavar="FILE", help="plan over the tools in this JSON file instead of agx's built-in tools (past mcp.max_tools, the most relevant ones)")
    p.add_argument("--repair-rounds", type=int, metavar="N", default=None,
                   help="times Delta may fix an invalid plan (default: execution.repair_rounds)")
    p.add_argument("--max-tasks", type=int, metavar="N", default=10, help="most tasks in a plan (default: 10)")
    p.add_argument("--no-log", action="store_true", help="do not write the plan to the session log")
    p.set_defaults(func=run)


def _read_request(args) -> str:
    from agx.cli.textinput import clean_text, read_stdin_text

    text = clean_text(" ".join(args.request)).strip()
    if not text and not sys.stdin.isatty():
        text = read_stdin_text().strip()
    if not text:
        raise CliError("nothing to plan: give a request or pipe one into agx plan", EXIT_USAGE)
    return text


def _load_catalogue(path: str | None):
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.tools import CatalogueFileError, load_catalogue_file

    if path is None:
        return builtin_catalogue()
    try:
        catalogue = load_catalogue_file(path)
    except CatalogueFileError as exc:
        raise CliError(f"--catalogue: {exc}", EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"--catalogue: {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    if len(catalogue) == 0:
        raise CliError(f"--catalogue: {path}: no tools in the file", EXIT_USAGE)
    return catalogue


def _compact(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 100 else text[:97] + "..."


def format_plan(result) -> str:
    """Human-readable DAG: goal, tasks by level with deps and args, figures, errors."""
    lines: list[str] = []
    plan = result.plan
    tasks = plan.tasks if plan is not None else []
    if plan is not None:
        lines.append(f"goal: {plan.goal}")
    flagged = {t.id for t in tasks if any(e.startswith(f"task {t.id!r}") for e in result.errors)}
    by_id = {t.id: t for t in tasks}
    # Levels exist only for an acyclic graph; otherwise list tasks as written.
    groups = [[by_id[i] for i in level if i in by_id] for level in result.levels] or ([tasks] if tasks else [])
    for n, group in enumerate(groups, 1):
        lines.append(f"level {n}:" if result.levels else "tasks (not a DAG):")
        for t in group:
            mark = "!" if t.id in flagged else " "
            deps = f"  <- {', '.join(t.deps)}" if t.deps else ""
            lines.append(f" {mark} {t.id}  {t.tool}  {t.title}{deps}")
            lines.append(f"      args {_compact(t.args)}")
    if plan is not None and result.levels:
        lines.append(f"critical path {result.critical_path} tasks, width {result.width}, "
                     f"{len(tasks)} tasks, {result.rounds} repair round{'s' if result.rounds != 1 else ''}")
    if result.errors:
        lines.append(f"invalid plan ({len(result.errors)} error{'s' if len(result.errors) != 1 else ''}):")
        lines.extend(f"  error: {e}" for e in result.errors)
    return "\n".join(lines)


def run(ctx: CliContext) -> int:
    args = ctx.args
    request = _read_request(args)
    catalogue = _load_catalogue(args.catalogue)
    if args.catalogue is None:  # built-in tools plus MCP servers' tools (agx/mcp), narrowed when many
        from agx.cli.cmd_mcp import planning_catalogue

        catalogue = planning_catalogue(ctx, catalogue, request)
    else:  # a large catalogue file is narrowed like MCP tools (mcp.max_tools), as Delta trained on it
        from agx.planning.retrieval import select_tools

        catalogue = select_tools(catalogue, request, ctx.config.mcp.max_tools)
    if args.repair_rounds is not None and args.repair_rounds < 0:
        raise CliError("--repair-rounds must be 0 or more", EXIT_USAGE)
    if args.max_tasks < 1:
        raise CliError("--max-tasks must be 1 or more", EXIT_USAGE)
    rounds = args.repair_rounds if args.repair_rounds is not None else ctx.config.execution.repair_rounds

    from agx.planning.planner import Planner

    ctx.warn_if_tiny("delta")
    engine = ctx.pool.engine("delta")
    engine.start_loading()
    planner = Planner(engine, catalogue, repo_dir=ctx.repo, repair_rounds=rounds, max_tasks=args.max_tasks)
    result = planner.plan(request)

    if not args.no_log and ctx.repo is not None:
        from agx.workspace.sessionlog import SessionLog

        SessionLog.open(ctx.repo).append("plan", **result.to_record())

    if args.json:
        plan = result.plan.model_dump() if result.plan is not None else result.plan_dict
        if plan is not None:
            print(json.dumps(plan, indent=2, ensure_ascii=False))
        for e in result.errors:
            print(f"agx: plan error: {e}", file=sys.stderr)
    else:
        print(format_plan(result))
    return EXIT_OK if result.ok else EXIT_FAILURE
