"""`agx mcp list|call|serve`: the MCP servers agx is configured with, and agx as one.

Servers come from agx.toml [mcp.servers.NAME] and the project's .mcp.json (agx/mcp/settings.py).
`planning_catalogue` is what `agx plan` / `agx run` plan over: built-in tools plus every up
server's tools, narrowed to the most relevant when there are more than mcp.max_tools.
"""

from __future__ import annotations

import json
import sys

from agx.cli.context import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliContext, CliError


def register(sub) -> None:
    p = sub.add_parser("mcp", help="MCP servers: list their tools, call one, or serve agx's planner over MCP",
                       description="Model Context Protocol servers from agx.toml ([mcp.servers.NAME]) and the "
                       "project's .mcp.json. Their tools are named SERVER.TOOL; Delta plans with them.")
    msub = p.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="start each server and list it: state, tools, risk",
                         description="Start every enabled server once and list it with its tools and their risk "
                         "(read: may run unapproved with --auto read; exec: always asks). Exit 1 when a server failed.")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=list_cmd)
    c = msub.add_parser("call", help="call one tool: agx mcp call SERVER.TOOL '{\"arg\": ...}'",
                        description="Call SERVER.TOOL with a JSON object of arguments and print its result. "
                        "Exit 1 when the tool reports an error or the server fails.")
    c.add_argument("tool", metavar="SERVER.TOOL")
    c.add_argument("args", nargs="?", default="{}", help="arguments as a JSON object (default: {})")
    c.add_argument("--timeout", type=float, metavar="S", help="seconds to wait (default: the server's timeout_s)")
    c.set_defaults(func=call_cmd)
    s = msub.add_parser("serve", help="serve agx over MCP (stdio): plan -> validated DAG, run_plan in a worktree",
                        description="Run agx as an MCP server on stdin/stdout with two tools: `plan` (a request -> "
                        "Delta's validated task DAG as JSON) and `run_plan` (a plan run in an isolated git worktree, "
                        "returning the summary). Point another agent at: agx -C REPO mcp serve")
    s.add_argument("--yes", action="store_true",
                   help="run_plan may run write/exec tasks (default: read-only tasks only; the rest are skipped)")
    s.set_defaults(func=serve_cmd)


def _manager(ctx: CliContext):
    from agx.mcp.manager import manager_for

    manager = manager_for(ctx.config, ctx.base_dir)
    if manager.on_notice is None:  # a server restarted after it died: one line on stderr
        manager.on_notice = lambda line: print(f"agx: {line}", file=sys.stderr, flush=True)
    return manager


def _risk_label(tool) -> str:
    from agx.mcp.catalogue import is_destructive, risk_of

    risk = risk_of(tool).value
    return f"{risk}, destructive" if is_destructive(tool) else risk


def list_cmd(ctx: CliContext) -> int:
    from agx.mcp.catalogue import mcp_tool_specs, qualified_name, short_description
    from agx.mcp.manager import State

    manager = _manager(ctx)
    statuses = manager.wait_ready()
    _, left_out = mcp_tool_specs(statuses)
    unplannable = {u.name: u.reason for u in left_out}
    if ctx.args.json:
        out = [{"name": st.name, "state": st.state.value, "command": st.display, "source": st.source,
                "error": st.error,
                "tools": [{"name": qualified_name(st.name, t.name), "risk": _risk_label(t),
                           "description": short_description(t.description),
                           "plannable": qualified_name(st.name, t.name) not in unplannable,
                           "not_plannable_because": unplannable.get(qualified_name(st.name, t.name))}
                          for t in st.tools]} for st in statuses]
        print(json.dumps(out, indent=2))
    elif not statuses:
        print("no MCP servers configured (agx.toml [mcp.servers.NAME], or the project's .mcp.json)")
    else:
        for st in statuses:
            count = f"{len(st.tools)} tool{'s' if len(st.tools) != 1 else ''}" if st.state is State.UP else ""
            print(f"{st.name:<16} {st.state.value:<9} {count:<9} {st.display}  ({st.source})")
            if st.error:
                print(f"  error: {st.error}")
            for t in st.tools:
                name = qualified_name(st.name, t.name)
                print(f"  {name:<32} [{_risk_label(t)}] {short_description(t.description)}")
                if name in unplannable:
                    print(f"    not offered to Delta: {unplannable[name]}")
    failed = any(st.state is State.FAILED for st in statuses)
    return EXIT_FAILURE if failed else EXIT_OK


def call_cmd(ctx: CliContext) -> int:
    from agx.mcp.manager import McpCallError

    args = ctx.args
    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise CliError(f"arguments: invalid JSON ({exc})", EXIT_USAGE) from None
    if not isinstance(arguments, dict):
        raise CliError("arguments: expected a JSON object, e.g. '{\"timezone\": \"Etc/UTC\"}'", EXIT_USAGE)
    if "." not in args.tool:
        raise CliError(f"{args.tool}: tools are named SERVER.TOOL (see `agx mcp list`)", EXIT_USAGE)
    if args.timeout is not None and args.timeout <= 0:
        raise CliError("--timeout must be positive", EXIT_USAGE)
    manager = _manager(ctx)
    server = args.tool.partition(".")[0]
    if server not in manager.names:
        raise CliError(f"{args.tool}: no MCP server named {server!r} (configured: {', '.join(manager.names) or 'none'})",
                       EXIT_USAGE)
    try:
        outcome = manager.call(args.tool, arguments, timeout=args.timeout)
    except McpCallError as exc:
        raise CliError(str(exc)) from None
    if outcome.is_error:
        print(f"agx: {args.tool} reported an error: {outcome.text}", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.write(outcome.text if outcome.text.endswith("\n") else outcome.text + "\n")
    return EXIT_OK


def serve_cmd(ctx: CliContext) -> int:
    from agx.cli.mcp_serve import serve_stdio

    return serve_stdio(ctx, allow_writes=ctx.args.yes)


# -- what Delta plans over -------------------------------------------------------------------
def planning_catalogue(ctx: CliContext, base, request: str | None = None, warn=None):
    """`base` plus the tools of every configured MCP server that came up (failures and tools
    left out are reported through `warn`, one line each). When that is more than mcp.max_tools,
    `base` plus the MCP tools most relevant to `request` (agx/planning/retrieval.py), up to
    mcp.max_tools in all. Without MCP servers: `base` unchanged, nothing started."""
    from agx.mcp.settings import server_specs

    warn = warn or (lambda line: print(f"agx: {line}", file=sys.stderr))
    if not any(s.enabled for s in server_specs(ctx.config, ctx.base_dir)):
        return base
    from agx.mcp.catalogue import with_mcp_tools
    from agx.mcp.manager import State

    statuses = _manager(ctx).wait_ready()
    for st in statuses:
        if st.state is State.FAILED and st.error:
            warn(st.error)
    catalogue, left_out = with_mcp_tools(base, statuses)
    for u in left_out:
        warn(u.line())
    if request is not None and len(catalogue) > ctx.config.mcp.max_tools:
        from agx.planning.retrieval import select_tools

        # agx's own tools stay (they are few, and the prompt's example uses them); the MCP
        # tools compete for the rest of the budget.
        catalogue = select_tools(catalogue, request, ctx.config.mcp.max_tools, always=base.names())
    return catalogue


def doctor_report(ctx: CliContext) -> int:
    """`agx doctor`'s MCP section: each enabled server started once; 1 when one failed."""
    from agx.mcp.catalogue import mcp_tool_specs
    from agx.mcp.manager import State
    from agx.mcp.settings import server_specs

    specs = server_specs(ctx.config, ctx.base_dir)
    print(f"\n[mcp] {len(specs)} server{'s' if len(specs) != 1 else ''} configured"
          + ("" if specs else " (agx.toml [mcp.servers.NAME] or the project's .mcp.json)"))
    if not specs:
        return 0
    import time

    t0 = time.perf_counter()
    statuses = _manager(ctx).wait_ready()
    _, left_out = mcp_tool_specs(statuses)
    for st in statuses:
        if st.state is State.UP:
            print(f"  {st.name:<14} up, {len(st.tools)} tools  ({st.display})")
        elif st.state is State.DISABLED:
            print(f"  {st.name:<14} disabled  ({st.source})")
        else:
            print(f"  {st.name:<14} FAILED — {st.error}")
    for u in left_out:
        print(f"  note: {u.line()}")
    print(f"  (started in {time.perf_counter() - t0:.1f} s)")
    return 1 if any(st.state is State.FAILED for st in statuses) else 0
