"""The shell's view of MCP servers: started in the background after the first frame, counted
in the status bar (servers up/total), listed by `/tools`, and their tools given to Delta.

Nothing here blocks the UI thread except `catalogue_now` (cheap: servers that are already up).
Planning, in its worker thread, waits for servers still starting (`planning_catalogue`).
"""

from __future__ import annotations

from pathlib import Path


def manager_if_configured(config, base_dir: Path):
    """This process's MCP manager, or None when no server is enabled (nothing is imported)."""
    from agx.mcp.settings import server_specs

    if not any(s.enabled for s in server_specs(config, base_dir)):
        return None
    from agx.mcp.manager import manager_for

    return manager_for(config, base_dir)


def status_text(manager) -> str:
    if manager is None:
        return ""
    up, total = manager.counts()
    return f"MCP {up}/{total}"


def catalogue_now(base, manager):
    """`base` plus the tools of servers up at this moment."""
    if manager is None:
        return base
    from agx.mcp.catalogue import with_mcp_tools

    return with_mcp_tools(base, manager.statuses())[0]


def planning_catalogue(base, manager, request: str, max_tools: int):
    """What Delta plans over: waits for servers still starting (call from a worker thread),
    then narrows to `max_tools` by relevance to `request` when larger."""
    if manager is None:
        return base
    from agx.mcp.catalogue import with_mcp_tools
    from agx.planning.retrieval import select_tools

    catalogue, _ = with_mcp_tools(base, manager.wait_ready())
    return select_tools(catalogue, request, max_tools, always=base.names())


def tools_listing(manager) -> str:
    """`/tools`: each server with its state, then its tools with their risk."""
    if manager is None:
        return "No MCP servers configured (agx.toml [mcp.servers.NAME], or the project's .mcp.json)."
    from agx.mcp.catalogue import is_destructive, mcp_tool_specs, qualified_name, risk_of, short_description

    statuses = manager.statuses()
    unplannable = {u.name for u in mcp_tool_specs(statuses)[1]}
    lines = []
    for st in statuses:
        lines.append(f"{st.name}: {st.state.value}" + (f", {len(st.tools)} tools" if st.tools else "")
                     + (f" — {st.error}" if st.error else ""))
        for t in st.tools:
            name = qualified_name(st.name, t.name)
            risk = risk_of(t).value + (", destructive" if is_destructive(t) else "")
            note = " (not offered to Delta: its schema)" if name in unplannable else ""
            lines.append(f"  {name} [{risk}] {short_description(t.description)}{note}")
    return "\n".join(lines)
