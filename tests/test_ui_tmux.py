"""`agx` in a real terminal (tmux): what a person sees, typed keys, a clean exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from ui_helpers import write_plan

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install -y tmux)")


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait_screen(session: str, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _screen(session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared on screen; last screen:\n{screen}")


def test_agx_in_a_real_terminal(git_repo, tmp_path):
    session = f"agx-test-{os.getpid()}"
    plan = write_plan(tmp_path)
    status_file = tmp_path / "exit_status"
    env = f"XDG_CONFIG_HOME={tmp_path / 'xdg'} XDG_CACHE_HOME={tmp_path / 'cache'} TERM=xterm-256color"
    # pytest exports COLUMNS/LINES, which Textual would obey over the real terminal size.
    command = (f"env -u COLUMNS -u LINES {env} {sys.executable} -m agx --set roles.echo.n_ctx=1024 --set roles.delta.n_ctx=1024; "
               f"echo $? > {status_file}; sleep 60")
    _tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "42", "-c", str(git_repo), command)
    try:
        # A detached session may keep the server's default size; fix it to 150x42.
        subprocess.run(["tmux", "set-option", "-t", session, "window-size", "manual"], capture_output=True)
        subprocess.run(["tmux", "resize-window", "-t", session, "-x", "150", "-y", "42"], capture_output=True)
        _wait_screen(session, "Message Echo", timeout=30)
        screen = _wait_screen(session, "main @", timeout=30)  # the git pane fills right after the first frame
        assert "Echo" in screen.splitlines()[0] and "Delta" in screen.splitlines()[0]  # the status bar
        assert "No plan" in screen and "main @" in screen  # plan pane, git pane on the repo's branch

        _tmux("send-keys", "-t", session, "-l", f"/run-plan {plan}")
        _tmux("send-keys", "-t", session, "Enter")
        _wait_screen(session, "t3 shell", timeout=20)
        screen = _wait_screen(session, "a Approve all", timeout=10)
        assert "awaiting your approval" in screen and "t2 write_file" in screen

        _tmux("send-keys", "-t", session, "a")
        screen = _wait_screen(session, "finished in", timeout=60)
        assert "✔ t3 shell" in screen

        _tmux("send-keys", "-t", session, "?")
        _wait_screen(session, "agx keys", timeout=10)
        _tmux("send-keys", "-t", session, "Escape")
        time.sleep(0.5)
        _tmux("send-keys", "-t", session, "C-q")
        deadline = time.monotonic() + 20
        while not status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status_file.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_bad_config_in_a_real_terminal_exits_2_with_the_message(git_repo, tmp_path):
    """In a terminal the first frame is drawn before agx.toml is validated; a bad config must
    still end with exit code 2 and the one-line error on the restored terminal, no traceback."""
    session = f"agx-badcfg-{os.getpid()}"
    status_file = tmp_path / "exit_status"
    (git_repo / "agx.toml").write_text("[ui]\nmax_fps = 0\n")
    command = (f"env -u COLUMNS -u LINES XDG_CONFIG_HOME={tmp_path / 'xdg'} XDG_CACHE_HOME={tmp_path / 'cache'} "
               f"TERM=xterm-256color "
               f"{sys.executable} -m agx; echo $? > {status_file}; sleep 60")
    _tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "42", "-c", str(git_repo), command)
    try:
        deadline = time.monotonic() + 30
        while not status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status_file.read_text().strip() == "2"
        screen = _screen(session)
        assert "agx: config error in" in screen and "ui.max_fps" in screen, screen
        assert "Traceback" not in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
