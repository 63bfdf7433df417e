"""`agx mcp serve`: agx as an MCP server over stdio, driven by agx's own MCP client (a real
subprocess, the real bundled model, a real git repository)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agx.mcp.manager import McpManager, State
from agx.mcp.settings import ServerSpec


def serve_spec(repo, *extra: str) -> ServerSpec:
    # The SDK passes only a few variables to servers; the test's isolation ones go explicitly.
    env = {k: v for k, v in os.environ.items() if k.startswith(("XDG_", "AGX_BUILD_CHECK")) or k == "HF_HUB_OFFLINE"}
    return ServerSpec("agx", "test", command=sys.executable,
                      args=("-m", "agx", "-C", str(repo), "--set", "roles.delta.n_ctx=2048", "--set",
                            "roles.delta.n_threads=2", "mcp", "serve", *extra), env=env, timeout_s=300)


def git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


PLAN = {"goal": "add notes", "tasks": [
    {"id": "t1", "title": "Read the readme", "tool": "read_files", "args": {"paths": ["README.md"]}, "deps": []},
    {"id": "t2", "title": "Write notes", "tool": "write_file", "args": {"path": "NOTES.md", "content": "${t1}"},
     "deps": ["t1"]},
]}


@pytest.mark.slow
def test_serve_runs_a_plan_in_a_worktree_and_plans_with_delta(git_repo, tiny_model_path):
    manager = McpManager([serve_spec(git_repo, "--yes")], base_dir=git_repo)
    try:
        status = manager.wait_ready()[0]
        assert status.state is State.UP, status.error
        tools = {t.name: t for t in status.tools}
        assert set(tools) == {"plan", "run_plan"}
        assert tools["plan"].annotations.read_only_hint is True

        out = manager.call("agx.run_plan", {"plan": PLAN})
        assert not out.is_error, out.text
        assert "done" in out.text.splitlines()[0] and "# demo" in out.text
        plan_id = out.text.split()[1].rstrip(":")
        assert git(git_repo, "show", f"agx/{plan_id}:NOTES.md").startswith("# demo")
        assert not (git_repo / "NOTES.md").exists()  # the caller's checkout is untouched

        bad = manager.call("agx.run_plan", {"plan": {"goal": "x", "tasks": [
            {"id": "t1", "title": "t", "tool": "no_such_tool", "args": {}, "deps": []}]}})
        assert bad.is_error and "invalid plan" in bad.text and "no_such_tool" in bad.text

        planned = manager.call("agx.plan", {"request": "Read README.md and explain it"})
        assert not planned.is_error, planned.text
        payload = json.loads(planned.text)
        assert payload["plan"] is not None and isinstance(payload["valid"], bool) and "errors" in payload
    finally:
        manager.close()


@pytest.mark.slow
def test_serve_without_yes_runs_only_read_only_tasks(git_repo, tiny_model_path):
    manager = McpManager([serve_spec(git_repo)], base_dir=git_repo)
    try:
        out = manager.call("agx.run_plan", {"plan": PLAN})
        assert not out.is_error, out.text
        assert "not run (write/exec tasks need `agx mcp serve --yes`): t2" in out.text
        assert "--- t1 (read_files) succeeded" in out.text and "--- t2 (write_file) skipped" in out.text
    finally:
        manager.close()
