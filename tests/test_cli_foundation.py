"""Headless commands as a user runs them: real subprocesses, the real bundled model."""

from __future__ import annotations

import json
import os
import subprocess
import sys



def _agx(*args, cwd, input=None, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "agx", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, input=input, env=env)


def test_help_lists_subcommands(tmp_path):
    proc = _agx("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for cmd in ("chat", "doctor", "models"):
        assert cmd in proc.stdout
    assert "exit codes" in proc.stdout
    sub = _agx("models", "--help", cwd=tmp_path)
    assert sub.returncode == 0 and "pull" in sub.stdout


def test_only_the_shell_path_skips_the_command_parsers():
    """`agx [global options]` opens the shell without importing every command module;
    anything naming a command, or asking for help, gets the full parser."""
    from agx.cli.main import _opens_the_shell

    assert _opens_the_shell([])
    assert _opens_the_shell(["--resume", "--set", "ui.max_fps=10", "-C", "chat", "--profile=mac"])
    assert not _opens_the_shell(["chat", "hi"])
    assert not _opens_the_shell(["--set", "a=b", "doctor"])
    assert not _opens_the_shell(["--help"])
    assert not _opens_the_shell(["--version"])


def test_bad_config_on_the_shell_path_exits_2(tmp_path):
    proc = _agx("--set", "ui.max_fps=0", cwd=tmp_path)
    assert proc.returncode == 2 and "ui.max_fps" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_subcommand_exits_2(tmp_path):
    proc = _agx("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_chat_streams_an_answer_and_logs_the_turn(git_repo):
    proc = _agx("chat", "--stats", "--max-tokens", "20", "What is the capital of France?", cwd=git_repo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert "tiny model" in proc.stderr  # the tiny default says so plainly
    assert "tok/s" in proc.stderr
    logs = list((git_repo / ".agx" / "sessions").glob("*.jsonl"))
    assert len(logs) == 1
    rec = json.loads(logs[0].read_text().splitlines()[-1])
    assert rec["type"] == "chat" and rec["role"] == "echo"
    assert rec["messages"][-1]["content"] == "What is the capital of France?"
    assert rec["response"].strip() == proc.stdout.strip()
    assert rec["stats"]["completion_tokens"] >= 1


def test_chat_reads_stdin_when_piped(git_repo):
    proc = _agx("chat", "--role", "delta", "--max-tokens", "12", "Summarise:", cwd=git_repo,
                input="def add(a, b):\n    return a + b\n")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(next((git_repo / ".agx" / "sessions").glob("*.jsonl")).read_text().splitlines()[-1])
    assert rec["role"] == "delta"
    assert rec["messages"][-1]["content"].startswith("Summarise:\n\ndef add(a, b):")


def test_chat_with_nothing_to_ask_exits_2(git_repo):
    proc = _agx("chat", cwd=git_repo, input="")
    assert proc.returncode == 2 and "nothing to ask" in proc.stderr


def test_chat_with_missing_model_is_a_clean_error(git_repo):
    proc = _agx("--set", "roles.echo.model=weights/missing.gguf", "chat", "hi", cwd=git_repo)
    assert proc.returncode == 1
    assert "roles.echo.model" in proc.stderr and "missing.gguf" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_doctor_reports_machine_build_and_verdicts(git_repo):
    proc = _agx("doctor", cwd=git_repo)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert "cpu:" in out and "ram:" in out
    assert "GPU offload: no" in out or "GPU offload: yes" in out
    assert out.count("verdict: OK") == 2
    assert "KV cache at n_ctx=4096" in out


def test_doctor_flags_a_model_that_does_not_fit(git_repo):
    proc = _agx("--set", "roles.delta.n_ctx=100000000", "doctor", cwd=git_repo)
    assert proc.returncode == 1
    assert "verdict: TOO BIG" in proc.stdout


def test_doctor_profile_with_missing_models(git_repo, tmp_path):
    proc = _agx("--profile", "worker1", "doctor", cwd=git_repo, env_extra={"AGX_MODELS_DIR": str(tmp_path / "none")})
    assert proc.returncode == 1
    assert "verdict: MISSING — agx models pull delta" in proc.stdout
