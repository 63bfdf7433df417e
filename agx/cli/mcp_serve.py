"""`agx mcp serve`: agx itself as an MCP server over stdio, for other agents.

Two tools:
- `plan` (read-only): a request -> Delta's validated task DAG (JSON), with its levels (tasks in
  one level can run in parallel), critical path, width and any errors left after repair.
- `run_plan`: a plan (as `plan` returns it, or hand-written) run in an isolated git worktree on
  branch agx/<plan-id>; returns the per-task summary and how to review/apply. The caller's
  checkout is not touched. Without `--yes` only read-only tasks run; the others are skipped
  (the summary says so), since nobody is at a terminal to approve them.

Protocol messages go to a private copy of the original stdout; fd 1 itself is pointed at stderr,
so nothing else that writes to stdout (llama.cpp, a stray print) can corrupt the stream.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from agx.cli.context import CliContext

MAX_OUTPUT_PER_TASK = 2000  # characters of each task's output in run_plan's summary


def _protect_stdout() -> None:
    proto = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = open(proto, "w", encoding="utf-8", newline="\n", closefd=True)


def _plan_payload(result) -> dict[str, Any]:
    plan = result.plan.model_dump() if result.plan is not None else result.plan_dict
    return {"plan_id": result.plan_id, "valid": result.ok, "plan": plan, "errors": list(result.errors),
            "levels": result.levels, "critical_path": result.critical_path, "width": result.width,
            "repair_rounds": result.rounds}


def serve_stdio(ctx: CliContext, allow_writes: bool = False) -> int:
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations

    from agx.cli.cmd_mcp import planning_catalogue
    from agx.execution.builtin_tools import builtin_catalogue

    config = ctx.config  # a bad config stops here, before any protocol traffic
    _protect_stdout()
    engine = ctx.pool.engine("delta")
    engine.wait_loaded()  # load now: a model load is the slow, noisy part; calls then start at once

    server = MCPServer("agx", instructions=(
        "agx plans requests as DAGs of tool calls over a git repository (`plan`) and runs such plans in an "
        "isolated git worktree (`run_plan`); the user's checkout is never changed."))

    def make_plan(request: str, max_tasks: int):
        from agx.planning.planner import Planner

        catalogue = planning_catalogue(ctx, builtin_catalogue(), request)
        planner = Planner(engine, catalogue, repo_dir=ctx.repo, repair_rounds=config.execution.repair_rounds,
                          max_tasks=max_tasks)
        return planner.plan(request)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False))
    async def plan(request: str, max_tasks: int = 10) -> str:
        """Plan a request with agx's planner (Delta) as a DAG of tasks over agx's tools and its MCP servers'
        tools. Returns JSON: the validated plan, its levels (tasks in one level can run in parallel), critical
        path, width, and errors if it is still invalid after repair. Runs nothing."""
        if not request.strip():
            raise ToolError("empty request")
        result = await anyio.to_thread.run_sync(make_plan, request, max(1, min(max_tasks, 20)))
        return json.dumps(_plan_payload(result), ensure_ascii=False)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def run_plan(plan: dict[str, Any], request: str = "") -> str:
        """Run a plan ({"goal", "tasks": [{"id", "title", "tool", "args", "deps"}]}, e.g. from `plan`) in an
        isolated git worktree on branch agx/<plan-id>. Returns the per-task summary, each task's output and
        the branch to review; the repository's checkout is not changed."""
        return await _run(ctx, engine, plan, request, allow_writes, ToolError)

    server.run()
    return 0


async def _run(ctx: CliContext, engine, plan_data: dict, request: str, allow_writes: bool, ToolError) -> str:
    import anyio

    from agx.cli.cmd_mcp import planning_catalogue
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.execution.plan_run import PlanRunError, finish_run, start_run
    from agx.execution.policy import ApprovalMode, Policy
    from agx.execution.printer import format_summary
    from agx.planning.validate import validate_plan
    from agx.workspace.plan_store import new_plan_id

    repo = ctx.repo
    if repo is None:
        raise ToolError("run_plan needs a git repository: start the server with agx -C REPO mcp serve")
    catalogue = planning_catalogue(ctx, builtin_catalogue())
    report = validate_plan(plan_data, catalogue)
    if report.errors or report.plan is None:
        raise ToolError("invalid plan: " + "; ".join(report.errors or ["not a plan"]))
    plan = report.plan
    policy = Policy(ApprovalMode.ALL if allow_writes else ApprovalMode.READ)
    try:
        prun = await anyio.to_thread.run_sync(lambda: start_run(
            repo, new_plan_id(), request=request or plan.goal, goal=plan.goal, plan=plan.model_dump(),
            catalogue=catalogue, policy=policy, engine=engine, execution=ctx.config.execution))
    except PlanRunError as exc:
        raise ToolError(str(exc)) from None
    ex = prun.executor
    import asyncio

    t0 = time.perf_counter()
    running = asyncio.ensure_future(ex.run())
    await asyncio.sleep(0)
    ex.add_plan(plan)
    ex.close_plan()
    refused = ex.undecided()
    ex.deny(refused)  # nobody to ask: without --yes, write/exec tasks are skipped
    result = await running
    wall = time.perf_counter() - t0
    rec = await anyio.to_thread.run_sync(finish_run, prun, result)
    nodes = [ex.nodes[i] for i in ex._order]
    lines = [f"plan {rec.plan_id}: {rec.state}", format_summary(nodes, wall)]
    if refused:
        lines.append(f"not run (write/exec tasks need `agx mcp serve --yes`): {', '.join(refused)}")
    for n in nodes:
        text = n.output if len(n.output) <= MAX_OUTPUT_PER_TASK else n.output[:MAX_OUTPUT_PER_TASK] + "\n[... cut]"
        lines.append(f"--- {n.task.id} ({n.task.tool}) {n.status.value}" + (f": {n.error}" if n.error else ""))
        if text.strip():
            lines.append(text.rstrip("\n"))
    commits = prun.git.commits_on_branch(rec.plan_id, prun.snapshot.commit)
    if commits:
        lines.append(f"{len(commits)} commit(s) on {rec.branch}; review: git diff {prun.snapshot.commit[:10]} {rec.branch}; "
                     f"then agx apply {rec.plan_id} or agx discard {rec.plan_id}")
    elif rec.state == "done":
        prun.git.discard_plan(rec.plan_id)
        rec.worktree = None
        prun.store.save(rec)
        lines.append("no files changed; the worktree and branch were removed")
    return "\n".join(lines)
