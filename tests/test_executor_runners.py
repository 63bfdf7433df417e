"""Each built-in tool's runner, through the executor, on real files, processes and the real model."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agx.execution.executor import Executor, Status, run_plan
from agx.execution.policy import ApprovalMode, Policy, UnsafePath, resolve_in_worktree
from agx.execution.runners import detect_test_command
from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.plan import Plan

CAT = builtin_catalogue()


def run_tasks(workdir: Path, *tasks: dict, **kw) -> Executor:
    ex = Executor("p-run", CAT, workdir, policy=Policy(ApprovalMode.ALL), **kw)
    asyncio.run(run_plan(Plan.model_validate({"goal": "g", "tasks": list(tasks)}), ex))
    return ex


def task(tid: str, tool: str, deps=(), **args) -> dict:
    return {"id": tid, "title": tid, "tool": tool, "args": args, "deps": list(deps)}


@pytest.fixture()
def work(tmp_path) -> Path:
    w = tmp_path / "work"
    (w / "src").mkdir(parents=True)
    (w / "src" / "app.py").write_text("def greet(name):\n    return 'hello ' + name\n")
    (w / "README.md").write_text("# demo\nhello world\n")
    return w


def test_read_files_and_search(work):
    ex = run_tasks(
        work,
        task("r", "read_files", paths=["src/app.py", "README.md"]),
        task("s", "search", pattern=r"hel+o"),
        task("s2", "search", pattern="greet", path="src"),
        task("bad", "search", pattern="("),
    )
    assert ex.nodes["r"].status is Status.SUCCEEDED
    assert "=== src/app.py ===\ndef greet" in ex.nodes["r"].output
    out = ex.nodes["s"].output
    assert "README.md:2: hello world" in out and "src/app.py:2:     return 'hello ' + name" in out
    assert ex.nodes["s2"].output.startswith("src/app.py:1: def greet")
    assert ex.nodes["bad"].status is Status.FAILED and "invalid regular expression" in ex.nodes["bad"].error


def test_write_and_edit_file(work):
    ex = run_tasks(
        work,
        task("w", "write_file", path="docs/new.md", content="line one\n"),
        task("e", "edit_file", deps=["w"], path="src/app.py",
             edits=[{"search": "'hello '", "replace": "'hi '"}, {"search": "def greet", "replace": "def salute"}]),
    )
    assert ex.nodes["w"].status is Status.SUCCEEDED and ex.nodes["e"].status is Status.SUCCEEDED
    assert (work / "docs" / "new.md").read_text() == "line one\n"
    assert (work / "src" / "app.py").read_text() == "def salute(name):\n    return 'hi ' + name\n"


def test_edit_file_fails_clearly_and_leaves_the_file_alone(work):
    before = (work / "src" / "app.py").read_text()
    (work / "dup.txt").write_text("x\nx\n")
    ex = run_tasks(
        work,
        task("missing", "edit_file", path="src/app.py", edits=[{"search": "def nothing", "replace": "y"}]),
        task("partial", "edit_file", path="src/app.py",
             edits=[{"search": "def greet", "replace": "def g"}, {"search": "absent", "replace": "z"}]),
        task("ambiguous", "edit_file", path="dup.txt", edits=[{"search": "x", "replace": "y"}]),
        task("nofile", "edit_file", path="nope.py", edits=[{"search": "a", "replace": "b"}]),
    )
    errors = {i: ex.nodes[i].error for i in ("missing", "partial", "ambiguous", "nofile")}
    assert "edit 1: search text not found: 'def nothing'" in errors["missing"]
    assert "edit 2: search text not found: 'absent'" in errors["partial"]
    assert "occurs 2 times (must be unique)" in errors["ambiguous"]
    assert "nope.py: no such file" in errors["nofile"]
    assert (work / "src" / "app.py").read_text() == before  # all-or-nothing
    assert (work / "dup.txt").read_text() == "x\nx\n"


def test_file_tools_refuse_paths_outside_the_worktree(work, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not touch\n")
    os.symlink(secret, work / "link.txt")
    os.symlink(tmp_path, work / "outdir")
    ex = run_tasks(
        work,
        task("abs", "read_files", paths=[str(secret)]),
        task("dots", "read_files", paths=["../secret.txt"]),
        task("link", "read_files", paths=["link.txt"]),
        task("wlink", "write_file", path="link.txt", content="pwned"),
        task("wdir", "write_file", path="outdir/new.txt", content="pwned"),
        task("edit", "edit_file", path="../secret.txt", edits=[{"search": "do", "replace": "pwned"}]),
        task("git", "write_file", path=".git/hooks/pre-commit", content="pwned"),
    )
    for tid in ("abs", "dots", "link", "wlink", "wdir", "edit", "git"):
        assert ex.nodes[tid].status is Status.FAILED, tid
    assert "absolute paths are not allowed" in ex.nodes["abs"].error
    assert "'..' is not allowed" in ex.nodes["dots"].error
    assert "resolves outside the repository" in ex.nodes["link"].error
    assert secret.read_text() == "do not touch\n"
    assert not (tmp_path / "new.txt").exists()


def test_resolve_in_worktree_accepts_inner_paths(tmp_path):
    (tmp_path / "a").mkdir()
    os.symlink(tmp_path / "a", tmp_path / "inner-link")
    assert resolve_in_worktree(tmp_path, "a/b.txt") == tmp_path.resolve() / "a" / "b.txt"
    assert resolve_in_worktree(tmp_path, "inner-link/x") == tmp_path.resolve() / "inner-link" / "x"
    with pytest.raises(UnsafePath):
        resolve_in_worktree(tmp_path, "")


def test_run_tests_uses_configured_command_and_detection(work, tmp_path):
    ex = run_tasks(work, task("t", "run_tests"), test_command="echo 3 passed; exit 0")
    assert ex.nodes["t"].status is Status.SUCCEEDED and "3 passed" in ex.nodes["t"].output
    ex = run_tasks(work, task("t", "run_tests", command="echo 1 failed; exit 1"))
    assert ex.nodes["t"].status is Status.FAILED and "tests failed (exit code 1)" in ex.nodes["t"].error
    ex = run_tasks(work, task("t", "run_tests"))  # nothing to detect in `work`
    assert "no test command found" in ex.nodes["t"].error

    for marker, expected in [("package.json", "npm test"), ("Cargo.toml", "cargo test"), ("go.mod", "go test ./...")]:
        d = tmp_path / marker.replace(".", "_")
        d.mkdir()
        (d / marker).write_text("")
        assert detect_test_command(d) == expected
    d = tmp_path / "mk"
    d.mkdir()
    (d / "Makefile").write_text("all:\n\ttrue\ntest:\n\ttrue\n")
    assert detect_test_command(d) == "make test"
    (d / "tests").mkdir()
    assert detect_test_command(d) == "python -m pytest -q"


def test_ask_model_with_the_bundled_model(work, tiny_model_path, tmp_path):
    """The real SmolLM2 answers; a dependency's output is substituted into the prompt."""
    from agx.config import load_config
    from agx.runtime.pool import EnginePool

    config = load_config(tmp_path, overrides=["roles.echo.n_ctx=1024", "roles.echo.n_threads=2",
                                              "roles.echo.sampling.max_tokens=12"], use_user_file=False).config
    pool = EnginePool(config, tmp_path)
    try:
        ex = run_tasks(
            work,
            task("r", "read_files", paths=["README.md"]),
            task("ask", "ask_model", deps=["r"], prompt="Summarise this file in five words:\n${r}"),
            engine=pool.engine("echo"),
        )
    finally:
        pool.close()
    assert ex.nodes["ask"].status is Status.SUCCEEDED, ex.nodes["ask"].error
    assert ex.nodes["ask"].output.strip()


def test_ask_model_without_an_engine_fails_clearly(work):
    ex = run_tasks(work, task("ask", "ask_model", prompt="hi"))
    assert ex.nodes["ask"].error == "ask_model: no model available to this run"
