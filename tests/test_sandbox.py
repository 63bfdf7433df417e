"""The OS sandbox around approved command tasks, proved with real `agx run` processes.

Each test runs the real CLI in a subprocess on a real git repository, with a shell task that
tries something the sandbox must stop (or allow). Skips name the kernel feature that is missing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agx.execution.sandbox import macos_profile, probe, wrap_command

SUPPORT = probe()
needs_landlock = pytest.mark.skipif(
    not SUPPORT.available, reason=f"this kernel offers no sandbox: {SUPPORT.why_not}")
needs_net_restriction = pytest.mark.skipif(
    SUPPORT.network is None,
    reason="this kernel can neither create network namespaces nor restrict TCP (Landlock ABI >= 4)")


def agx_run(repo: Path, tmp_path: Path, tasks: list[dict], *settings: str) -> subprocess.CompletedProcess:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "sandbox check", "tasks": tasks}))
    sets = [arg for s in settings for arg in ("--set", s)]
    return subprocess.run([sys.executable, "-m", "agx", "-C", str(repo), *sets, "run", "--plan", str(plan), "--yes",
                           "--show-output"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def shell(tid: str, command: str) -> dict:
    return {"id": tid, "title": f"task {tid}", "tool": "shell", "args": {"command": command}, "deps": []}


def plan_record(repo: Path) -> dict:
    (path,) = (repo / ".agx" / "plans").glob("*.json")
    return json.loads(path.read_text())


@needs_landlock
def test_a_write_outside_the_worktree_is_refused_and_never_reported_as_no_change(git_repo, tmp_path):
    outside = tmp_path / "outside.txt"
    proc = agx_run(git_repo, tmp_path, [shell("w", f"echo leaked > {outside}")])
    assert not outside.exists(), "the sandbox let a task write outside the worktree"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Permission denied" in proc.stdout
    assert plan_record(git_repo)["tasks"]["w"]["status"] == "failed"
    assert "No files changed" not in proc.stdout


@needs_landlock
def test_a_write_inside_the_worktree_works_and_is_committed(git_repo, tmp_path):
    proc = agx_run(git_repo, tmp_path, [shell("w", "echo made > inside.txt && mkdir -p d && echo x > d/y && "
                                                   "echo tmp > \"${TMPDIR:-/tmp}/agx-sandbox-$$\" && "
                                                   "rm \"${TMPDIR:-/tmp}/agx-sandbox-$$\" && echo done > /dev/null")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = plan_record(git_repo)
    shown = subprocess.run(["git", "show", "--name-only", "--format=", f"agx/{rec['plan_id']}"], cwd=git_repo,
                           capture_output=True, text=True, check=True).stdout.split()
    assert sorted(shown) == ["d/y", "inside.txt"]
    assert not (git_repo / "inside.txt").exists()  # the user's checkout is untouched until apply


@needs_landlock
def test_the_users_repository_and_git_dir_are_read_only(git_repo, tmp_path):
    config_before = (git_repo / ".git" / "config").read_bytes()
    readme_before = (git_repo / "README.md").read_bytes()
    hook = git_repo / ".git" / "hooks" / "post-checkout"
    proc = agx_run(git_repo, tmp_path, [
        shell("hook", f"printf '#!/bin/sh\\necho pwned\\n' > {hook}"),
        shell("config", f"echo '[core] hooksPath = /tmp' >> {git_repo / '.git' / 'config'}"),
        shell("ref", f"git -C {git_repo} branch sneaky"),
        shell("checkout", f"echo changed > {git_repo / 'README.md'}"),
        shell("reads", "git status --short && git log --oneline -1 && cat README.md"),  # reading still works
    ])
    assert proc.returncode == 1
    assert not hook.exists()
    assert (git_repo / ".git" / "config").read_bytes() == config_before
    assert (git_repo / "README.md").read_bytes() == readme_before
    assert "sneaky" not in subprocess.run(["git", "branch"], cwd=git_repo, capture_output=True, text=True).stdout
    statuses = {tid: t["status"] for tid, t in plan_record(git_repo)["tasks"].items()}
    assert statuses == {"hook": "failed", "config": "failed", "ref": "failed", "checkout": "failed",
                        "reads": "succeeded"}


class _OneShotServer:
    """A TCP server on 127.0.0.1 that counts connections and stops itself after 60 s."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(60)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            while True:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
        except OSError:
            pass

    def close(self):
        self.sock.close()


def _connect_command(port: int) -> str:
    return (f"{sys.executable} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); "
            f"print('connected')\"")


@needs_landlock
@needs_net_restriction
def test_network_is_off_unless_the_config_allows_it(git_repo, tmp_path):
    server = _OneShotServer()
    try:
        off = agx_run(git_repo, tmp_path, [shell("net", _connect_command(server.port))])
        assert off.returncode == 1 and "connected" not in off.stdout.replace("unreachable", "")
        assert server.accepted == 0, "a sandboxed task reached a server on 127.0.0.1"
        on = agx_run(git_repo, tmp_path, [shell("net", _connect_command(server.port))], "execution.sandbox.network=true")
        assert on.returncode == 0, on.stdout + on.stderr
        assert "connected" in on.stdout and server.accepted == 1
    finally:
        server.close()


@needs_landlock
def test_read_only_mode_refuses_writes_in_the_worktree_too(git_repo, tmp_path):
    proc = agx_run(git_repo, tmp_path, [shell("w", "echo x > inside.txt")], "execution.sandbox.mode=read-only")
    assert proc.returncode == 1 and "Permission denied" in proc.stdout
    assert not any((git_repo / ".agx" / "worktrees").rglob("inside.txt"))


def test_mode_off_runs_unsandboxed_and_reports_what_it_sees(git_repo, tmp_path):
    outside = tmp_path / "outside.txt"
    proc = agx_run(git_repo, tmp_path, [shell("w", f"echo free > {outside} && echo edited >> {git_repo / 'README.md'}")],
                   "execution.sandbox.mode=off")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outside.read_text() == "free\n"
    # The write into the user's checkout is named; "No files changed" is never said alone.
    assert "Changed in your checkout while the plan ran" in proc.stdout and "README.md" in proc.stdout
    assert "No files changed; the worktree" not in proc.stdout
    assert "No files changed in the worktree" in proc.stdout


def test_mode_off_with_a_write_elsewhere_says_agx_cannot_see_it(git_repo, tmp_path):
    outside = tmp_path / "elsewhere.txt"
    proc = agx_run(git_repo, tmp_path, [shell("w", f"echo free > {outside}")], "execution.sandbox.mode=off")
    assert proc.returncode == 0 and outside.exists()
    assert "Commands ran without a sandbox" in proc.stdout
    assert "No files changed; the worktree" not in proc.stdout


@needs_landlock
def test_doctor_names_the_sandbox(tmp_path):
    from agx.config.schema import SandboxConfig
    from agx.execution.sandbox import describe, unavailable_notice

    assert describe(SandboxConfig()).startswith(f"workspace-write via {SUPPORT.filesystem}")
    assert unavailable_notice(SandboxConfig()) is None  # nothing to warn about on this kernel
    assert describe(SandboxConfig(mode="off")).startswith("off")
    # The real command says it too, on one line.
    out = subprocess.run([sys.executable, "-m", "agx", "-C", str(tmp_path), "doctor"], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    (line,) = [ln for ln in out.stdout.splitlines() if ln.startswith("sandbox:")]
    assert "workspace-write via Landlock" in line and "network off" in line


def test_wrapping_is_plain_sh_when_off_and_a_sandbox_exec_profile_denies_writes(tmp_path):
    from agx.config.schema import SandboxConfig

    argv, env = wrap_command("echo hi", SandboxConfig(mode="off"), tmp_path)
    assert argv == ["/bin/sh", "-c", "echo hi"] and env == {}
    # macOS: the profile agx hands sandbox-exec (it cannot run here; this checks what it says).
    profile = macos_profile(SandboxConfig(), tmp_path, network_off=True)
    assert "(deny file-write*)" in profile and f'(subpath "{os.path.realpath(tmp_path)}")' in profile
    assert "(deny network*)" in profile


@needs_landlock
def test_a_commands_temp_dir_is_removed_even_after_agx_is_killed(git_repo, tmp_path):
    import signal
    import tempfile
    import time

    from agx.execution.sandbox import SCRATCH_PREFIX

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "tasks": [shell("slow", "echo x > \"$TMPDIR/kept\"; sleep 60")]}))
    proc = subprocess.Popen([sys.executable, "-m", "agx", "-C", str(git_repo), "run", "--plan", str(plan), "--yes"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = f"{SCRATCH_PREFIX}{proc.pid}-*"
    try:
        deadline = time.monotonic() + 60
        while not list(Path(tempfile.gettempdir()).glob(f"{pattern}/kept")):
            assert time.monotonic() < deadline and proc.poll() is None, "the task never wrote to its temp dir"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(Path(tempfile.gettempdir()).glob(pattern)), "the killed agx's temp dir should still be there"
    # The next agx that runs a command cleans up (and kills the orphaned sleep, see test_run_cli).
    agx_run(git_repo, tmp_path, [shell("w", "true")])
    assert not list(Path(tempfile.gettempdir()).glob(pattern))
