"""agx/workspace/gitread.py: git reads through GitPython, on real repositories."""

from __future__ import annotations

import pytest

from agx.workspace import gitread


def test_run_reads_a_real_repository(git_repo):
    assert "src/app.py" in gitread.run(git_repo, "ls-files").splitlines()
    (git_repo / "new.txt").write_text("x")
    assert "?? new.txt" in gitread.run(git_repo, "status", "--short")
    assert len(gitread.run(git_repo, "rev-parse", "HEAD").strip()) == 40


def test_failures_say_why_and_output_or_none_says_nothing(git_repo, tmp_path):
    with pytest.raises(gitread.GitReadError, match="unknown revision"):
        gitread.run(git_repo, "log", "no-such-ref")
    assert gitread.output_or_none(tmp_path, "status") is None  # not a repository


def test_init_makes_a_repository_on_the_named_branch(tmp_path):
    gitread.init(tmp_path / "r", initial_branch="main")
    assert (tmp_path / "r" / ".git").is_dir()
    assert gitread.run(tmp_path / "r", "symbolic-ref", "--short", "HEAD").strip() == "main"
