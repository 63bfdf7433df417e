"""The shell with MCP servers (Textual's Pilot, real servers from .mcp.json, real executor):
status bar servers up/total, /tools, a plan with an MCP tool approved and run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agx.config import load_config
from agx.ui import plan_view as pv
from agx.ui.app import AgxApp
from agx.ui.widgets.chat import Notice
from agx.ui.widgets.status import StatusBar
from ui_helpers import wait_for, write_plan

SIZE = (160, 45)
BIN = Path(sys.executable).parent


def _config(base):
    return load_config(base, overrides=["roles.echo.n_ctx=2048", "roles.delta.n_ctx=2048"], use_user_file=False).config


async def test_shell_counts_servers_lists_tools_and_runs_an_mcp_task(git_repo, tmp_path):
    (git_repo / ".mcp.json").write_text(json.dumps({"mcpServers": {
        "time": {"command": str(BIN / "mcp-server-time")},
        "broken": {"command": "/bin/sh", "args": ["-c", "echo bad-token >&2; exit 5"]}}}))
    app = AgxApp(_config(git_repo), None, git_repo, load_models=False, watch_files=False)
    async with app.run_test(size=SIZE) as pilot:
        status = app.query_one(StatusBar)
        await wait_for(pilot, lambda: status.mcp == "MCP 1/2", timeout=60, what="servers up/total")
        assert "MCP 1/2" in str(status.render_text())
        await wait_for(pilot, lambda: any("status 5" in str(n.render()) for n in app.chat.query(Notice)),
                       timeout=10, what="the failed server's notice")

        app.handle_input("/tools")
        await pilot.pause(0.2)
        listing = str(list(app.chat.query(Notice))[-1].render())
        assert "time: up, 2 tools" in listing and "time.get_current_time [read]" in listing
        assert "broken: failed" in listing and "bad-token" in listing

        plan = {"goal": "what time is it", "tasks": [
            {"id": "t1", "title": "Ask the time", "tool": "time.get_current_time", "args": {"timezone": "Etc/UTC"},
             "deps": []}]}
        app.handle_input(f"/run-plan {write_plan(tmp_path, plan)}")
        await pilot.pause(0.3)
        assert app.plan is not None and list(app.plan.tasks) == ["t1"], "the plan must validate with MCP tools"
        await pilot.press("a")
        await wait_for(pilot, lambda: app.plan.phase == pv.FINISHED, timeout=60, what="the run")
        assert app.plan.tasks["t1"].status == "done"
        assert '"timezone": "Etc/UTC"' in "".join(app.task_pane.outputs.get("t1", []))
