"""The shell's approval callback for the agent loop's follow-up rounds (no model needed)."""

from __future__ import annotations

import asyncio

import pytest

from agx.config import load_config
from agx.execution.builtin_tools import builtin_catalogue
from agx.execution.executor import Executor
from agx.planning.plan import Task
from agx.ui.app import AgxApp
from agx.ui.screens import ConfirmScreen
from ui_helpers import wait_for

SIZE = (160, 45)


def _executor(tmp_path) -> Executor:
    ex = Executor("p-rounds", builtin_catalogue(), tmp_path)
    ex.add_task(Task(id="r2-t1", title="fix calc", tool="write_file", args={"path": "a", "content": "b"}, deps=[]))
    return ex


@pytest.mark.parametrize("key, expected", [("y", (["r2-t1"], [])), ("n", ([], ["r2-t1"]))])
async def test_a_follow_up_round_is_confirmed_in_a_dialog_listing_its_tasks(git_repo, tmp_path, key, expected):
    config = load_config(git_repo, use_user_file=False).config
    app = AgxApp(config, None, git_repo, load_models=False)
    async with app.run_test(size=SIZE) as pilot:
        approve = app._round_approver((["t1"], ["t2"]))
        # Round 1: the review's decisions, no question asked.
        assert await approve(_executor(tmp_path), ["t1", "t2"]) == (["t1"], ["t2"])
        answer = asyncio.ensure_future(approve(_executor(tmp_path), ["r2-t1"]))
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=10, what="the round dialog")
        assert "r2-t1 [write] write_file: fix calc" in app.screen.question
        await pilot.press(key)
        assert await asyncio.wait_for(answer, 5) == expected
