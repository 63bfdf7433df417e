"""What the user approves is shown in full: the headless prompt of the real `agx run` (a real
terminal on stdin, answers typed into it) and the shell's plan pane (Textual's pilot)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

from agx.config import load_config
from agx.ui import plan_view as pv
from agx.ui.app import AgxApp
from agx.ui.widgets.plan import ArgLine
from ui_helpers import write_plan

# 300 characters; what matters is at the very end, where a 60-column cut used to hide it.
REDIRECT = " > ~/.ssh/authorized_keys"
LONG_COMMAND = ("echo " + " ".join(f"word{i:03d}" for i in range(40)))[: 300 - len(REDIRECT)] + REDIRECT
assert len(LONG_COMMAND) == 300
CONTENT = "line one\nline two\n" + "".join(f"row {i}\n" for i in range(5))


def _plan(tmp_path: Path) -> Path:
    return write_plan(tmp_path, {"goal": "show everything", "tasks": [
        {"id": "t1", "title": "Look", "tool": "read_files", "args": {"paths": ["README.md"]}, "deps": []},
        {"id": "t2", "title": "Innocent title", "tool": "shell", "args": {"command": LONG_COMMAND}, "deps": []},
        {"id": "t3", "title": "Write", "tool": "write_file", "args": {"path": "notes/a.txt", "content": CONTENT},
         "deps": []},
    ]})


def _unwrap(lines: list[str], label: str) -> str:
    """The value under `label:` in approval lines (indented continuation lines joined back)."""
    out, inside = [], False
    for line in lines:
        text = line.strip("\n")
        if text.strip().startswith(f"{label}:"):
            rest = text.split(f"{label}:", 1)[1]
            if rest.strip():
                return rest.strip()
            inside, indent = True, len(text) - len(text.lstrip()) + 2
            continue
        if inside:
            if len(text) - len(text.lstrip(" ")) < indent or not text.strip():
                break
            out.append(text[indent:])
    return "".join(out)


def _run_with_answers(repo: Path, plan: Path, answers: str) -> str:
    """`agx run --plan` with a real terminal on stdin; `answers` typed once it asks."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="72")
    proc = subprocess.Popen([sys.executable, "-m", "agx", "-C", str(repo), "run", "--plan", str(plan)],
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    os.close(slave)
    try:
        os.write(master, answers.encode())  # waits in the terminal's queue until agx reads it
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return out.decode()


def test_headless_prompt_shows_the_whole_command_and_every_write_argument(git_repo, tmp_path):
    out = _run_with_answers(git_repo, _plan(tmp_path), "n\n")
    lines = out.splitlines()
    asked = next(i for i, ln in enumerate(lines) if "need approval" in ln)
    question = next(i for i, ln in enumerate(lines) if "Run them?" in ln)
    shown = lines[asked:question + 1]
    assert _unwrap(shown, "command") == LONG_COMMAND, "\n".join(shown)
    assert max(len(ln) for ln in shown[:-1]) <= 72  # wrapped to the terminal, not cut
    assert "path: notes/a.txt" in "\n".join(shown)
    content_at = next(i for i, ln in enumerate(shown) if ln.strip() == "content:")
    assert [ln.strip() for ln in shown[content_at + 1: content_at + 8]] == CONTENT.splitlines()
    assert not (git_repo / ".agx" / "worktrees").exists() or not any(
        (git_repo / ".agx" / "worktrees").rglob("notes"))  # denied: nothing ran


def test_approve_each_shows_the_task_in_full_before_its_question(git_repo, tmp_path):
    out = _run_with_answers(git_repo, _plan(tmp_path), "e\nn\nn\nn\n")
    lines = out.splitlines()
    question = next(i for i, ln in enumerate(lines) if "run t2?" in ln)
    block_start = max(i for i in range(question) if "t2 [exec] shell: Innocent title" in lines[i])
    assert _unwrap(lines[block_start:question], "command") == LONG_COMMAND


def test_control_characters_cannot_hide_part_of_a_command():
    from agx.execution.printer import approval_details

    sneaky = "echo safe\r\x1b[2K# harmless\u202e > ~/.bashrc"
    (line,) = approval_details({"command": sneaky}, 200)
    assert "\r" not in line and "\x1b" not in line and "\u202e" not in line
    assert line == "command: echo safe\\x0d\\x1b[2K# harmless\\u202e > ~/.bashrc"


async def test_the_plan_pane_shows_the_whole_command_before_approval(git_repo, tmp_path):
    config = load_config(git_repo, overrides=[], use_user_file=False).config
    app = AgxApp(config, None, git_repo, load_models=False)
    async with app.run_test(size=(150, 60)) as pilot:
        app.handle_input(f"/run-plan {_plan(tmp_path)}")
        deadline = time.monotonic() + 20
        while app.plan is None or app.plan.phase != pv.REVIEW:
            assert time.monotonic() < deadline, "the plan never reached review"
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        pane = app.plan_pane
        node = pane._task_nodes["t2"]
        details = [str(child.label) for child in node.children]
        assert node.is_expanded and all(isinstance(c.data, ArgLine) for c in node.children)
        assert _unwrap(details, "command") == LONG_COMMAND
        # And on screen, every piece whole (no ellipsis, nothing scrolled off to the side).
        screen = [pane.render_line(y).text for y in range(pane.size.height)]
        for piece in details:
            assert any(piece.strip() in row for row in screen), (piece, screen)
        # The write's path and content are there too; read-only t1 has no detail lines.
        t3 = [str(c.label) for c in pane._task_nodes["t3"].children]
        assert "path: notes/a.txt" in t3 and [x.strip() for x in t3[t3.index("content:") + 1:]] == CONTENT.splitlines()
        assert not pane._task_nodes["t1"].children
        # A detail line selects its task: approval keys act on it.
        pane.move_cursor(node.children[-1])
        await pilot.pause(0.1)
        assert pane.selected_task_id() == "t2"


async def test_a_follow_up_round_is_confirmed_with_every_command_in_full(git_repo, tmp_path):
    """The shell's dialog for Delta's follow-up round (agent loop) lists each task, and every write
    and command in full: a real executor holding the round's tasks, the real dialog."""
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.execution.executor import Executor
    from agx.planning.plan import Plan
    from agx.ui.screens import ConfirmScreen

    plan = Plan.model_validate(json.loads(_plan(tmp_path).read_text()))
    plan.tasks[1].args["command"] = LONG_COMMAND + " [red]not markup[/red]"
    executor = Executor("p-round", builtin_catalogue(), git_repo)
    executor.add_plan(plan)
    config = load_config(git_repo, overrides=[], use_user_file=False).config
    app = AgxApp(config, None, git_repo, load_models=False)
    async with app.run_test(size=(150, 60)) as pilot:
        answer = asyncio.ensure_future(app._confirm_round(executor, ["t1", "t2", "t3"]))
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfirmScreen)
        question = app.screen.question.plain
        lines = question.splitlines()
        assert _unwrap(lines, "command") == LONG_COMMAND + " [red]not markup[/red]"
        assert "path: notes/a.txt" in question and "row 4" in question
        await pilot.press("n")
        assert await answer == ([], ["t1", "t2", "t3"])
