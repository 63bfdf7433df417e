"""Bad input refused plainly, by the real `agx` in a subprocess: exit 2 (or 1 for a model that
cannot run), one line naming the problem, no traceback, nothing started or lost."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def agx(*args: str, cwd: Path, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "agx", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


def shell_plan(tmp_path: Path, command: str = "true") -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"goal": "g", "tasks": [
        {"id": "t1", "title": "run", "tool": "shell", "args": {"command": command}, "deps": []}]}))
    return path


def test_the_shell_without_a_terminal_refuses_at_once(git_repo):
    t0 = time.monotonic()
    proc = agx(cwd=git_repo, timeout=60)  # stdin /dev/null, stdout and stderr pipes
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 2, proc.stderr
    assert "needs a terminal" in proc.stderr and "agx chat" in proc.stderr and "agx run" in proc.stderr
    assert proc.stdout == "" and "\x1b[" not in proc.stderr  # nothing drawn into the pipe
    assert "Traceback" not in proc.stderr


def test_the_shell_without_a_terminal_reports_a_bad_config_first(git_repo):
    proc = agx("--set", "roles.echo.n_ctx=big", cwd=git_repo, timeout=60)
    assert proc.returncode == 2 and "roles.echo.n_ctx" in proc.stderr and "needs a terminal" not in proc.stderr


def test_zero_max_parallel_and_zero_timeout_are_refused(git_repo, tmp_path):
    plan = shell_plan(tmp_path)
    for flags, word in ((["--max-parallel", "0"], "--max-parallel"), (["--timeout", "0"], "--timeout"),
                        (["--timeout", "-3"], "--timeout"), (["--timeout", "nan"], "--timeout")):
        proc = agx("run", "--plan", str(plan), "--yes", *flags, cwd=git_repo)
        assert proc.returncode == 2, (flags, proc.stdout, proc.stderr)
        assert word in proc.stderr and "Traceback" not in proc.stderr
    assert not (git_repo / ".agx" / "plans").exists() or not any((git_repo / ".agx" / "plans").iterdir())


def test_a_model_path_that_is_a_directory_is_called_a_directory(git_repo, tmp_path):
    folder = tmp_path / "models-folder"
    folder.mkdir()
    proc = agx("--set", f"roles.echo.model={folder}", "chat", "hi", cwd=git_repo)
    assert proc.returncode == 1
    assert "is a directory" in proc.stderr and "does not exist" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_impossible_context_is_refused_before_loading_with_the_figure(git_repo):
    start = time.monotonic()
    # 4 GiB of address space at most: should the check ever be lost, llama.cpp fails fast in the
    # child instead of taking ~20 GB of this machine (and the assertions below fail).
    child = subprocess.Popen([sys.executable, "-m", "agx", "--set", "roles.echo.n_ctx=1000000000", "chat", "hi"],
                             cwd=git_repo, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)))
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode()
    assert child.returncode == 1, err
    assert "n_ctx=1000000000 needs ~" in err and "KV cache" in err and "not loaded" in err
    # Before the fix: 35-43 s and 19.7 GB of RAM before llama.cpp failed.
    peak_mb = usage.ru_maxrss / 1024
    assert wall < 20 and peak_mb < 1500, f"refused after {wall:.1f}s at {peak_mb:.0f} MB peak RSS"


def test_a_broken_model_for_a_role_the_plan_does_not_use_is_mentioned_once(git_repo, tmp_path):
    plan = shell_plan(tmp_path, "echo fine")
    missing = tmp_path / "nowhere" / "echo.gguf"
    proc = agx("--set", f"roles.echo.model={missing}", "run", "--plan", str(plan), "--yes", cwd=git_repo)
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "roles.echo.model" in ln]
    assert len(notes) == 1 and "not needed by this plan" in notes[0] and str(missing) in notes[0]
