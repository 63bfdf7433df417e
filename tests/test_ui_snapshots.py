"""Snapshot tests of the shell's main screen and of plan approval (pytest-textual-snapshot).

Content is made deterministic: no model is loaded (the status bar shows fixed figures), the git
repository has fixed commit dates (so fixed hashes), the plan has a fixed id, the input's
cursor does not blink. Update after an intended change: pytest --snapshot-update.
"""

from __future__ import annotations

import subprocess

import pytest
from textual.widgets import Input

from agx.config import load_config
from agx.ui.app import AgxApp
from agx.ui.widgets import StatusBar
from ui_helpers import write_plan

FIXED_DATE = "2025-01-01T12:00:00+00:00"


@pytest.fixture()
def fixed_repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE, "GIT_AUTHOR_NAME": "agx test",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "agx test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (repo / "README.md").write_text("# demo\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def _app(repo) -> AgxApp:
    config = load_config(repo, overrides=[], use_user_file=False).config
    return AgxApp(config, None, repo, load_models=False, watch_files=False)


async def _fixed_status(pilot) -> None:
    app = pilot.app
    app.query_one(Input).cursor_blink = False
    status = app.query_one(StatusBar)
    for name, rs in status.roles.items():
        rs.model, rs.accelerator, rs.state = "SmolLM2-135M-Instruct.Q4_1.gguf", "CPU", "ready"
        rs.tokens_per_s, rs.context_used, rs.n_ctx = 104.0, 311, 4096
    status.refresh_status()


def test_main_screen(snap_compare, fixed_repo):
    app = _app(fixed_repo)

    async def before(pilot):
        await _fixed_status(pilot)
        app.chat.add_user("How do I list the files changed in my last commit?")
        app.chat.add_notice("Echo: conversation (not a change request).", "route")
        app.chat.start_answer(1, "echo", "Use `git show --stat HEAD`:\n\n```bash\ngit show --stat HEAD\n```\n\n"
                                         "It prints the commit and a summary of **changed files**.")
        app.chat.end_answer(1, "38 tok · 104 tok/s")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(150, 40), run_before=before)


def test_plan_approval_screen(snap_compare, fixed_repo, tmp_path):
    app = _app(fixed_repo)
    plan_file = write_plan(tmp_path)

    async def before(pilot):
        await _fixed_status(pilot)
        app.chat.add_user("/plan add a greeting file")
        app.load_plan_file(str(plan_file), plan_id="20250101-120000-demo")
        await pilot.pause(0.3)
        app.plan_pane.select_task("t2")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(150, 40), run_before=before)
