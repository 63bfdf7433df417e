"""`agx run --json`: the session's events as JSON Lines, final summary last, schema as in README."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agx.cli.main import main

# The documented schema (README.md, "agx run --json"): every line has these keys ...
COMMON = {"event", "plan_id", "ts"}
# ... and each event kind these.
FIELDS = {
    "RoundStarted": {"round", "request"},
    "PlanningStarted": {"request"},
    "TaskAdded": {"task"},
    "Planned": {"plan", "errors", "repair_rounds", "critical_path", "width"},
    "Approved": {"task_ids"},
    "TaskApprovalNeeded": {"task_ids"},
    "TaskStarted": {"task_id"},
    "TaskProcessStarted": {"task_id", "pgid", "started"},
    "TaskOutput": {"task_id", "text", "stream"},
    "TaskFinished": {"task_id", "seconds", "output", "commit"},
    "TaskFailed": {"task_id", "seconds", "error"},
    "TaskSkipped": {"task_id", "reason"},
    "TaskCancelled": {"task_id", "seconds"},
    "RunFinished": {"ok", "wall_s", "task_s"},
    "RoundObserved": {"round", "ok", "failed", "tests", "commits"},
    "SessionFinished": {"reason", "summary"},
}
SUMMARY = {"plan_id", "request", "reason", "ok", "rounds", "max_rounds", "files", "commits", "tests", "failed",
           "errors", "branch", "worktree", "base_commit", "apply", "discard", "tests_before", "worktree_removed",
           "changed_outside", "unconfined_commands"}


def check_lines(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    assert lines, "no events"
    events = [json.loads(line) for line in lines]  # every line parses on its own
    for e in events:
        assert COMMON <= set(e), e
        assert set(e) - COMMON == FIELDS[e["event"]], e["event"]
    assert events[-1]["event"] == "SessionFinished" and [e["event"] for e in events].count("SessionFinished") == 1
    assert set(events[-1]["summary"]) == SUMMARY
    return events


def test_json_lines_for_a_plan_file(git_repo, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "note", "tasks": [
        {"id": "t1", "title": "write", "tool": "write_file", "args": {"path": "n.txt", "content": "hi\n"}, "deps": []},
        {"id": "t2", "title": "show", "tool": "shell", "args": {"command": "cat n.txt"}, "deps": ["t1"]}]}))
    code = main(["-C", str(git_repo), "run", "--plan", str(plan), "--yes", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    events = check_lines(out)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "RoundStarted" and "RoundObserved" in kinds
    assert any(e["event"] == "TaskOutput" and e["text"] == "hi\n" for e in events)
    s = events[-1]["summary"]
    assert s["reason"] == "done" and s["files"] == [{"path": "n.txt", "change": "added"}]
    assert s["apply"] == f"agx apply {s['plan_id']}"


def test_json_exit_code_is_1_when_the_goal_is_not_met(git_repo, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "fail", "tasks": [
        {"id": "t1", "title": "fail", "tool": "shell", "args": {"command": "echo boom; exit 3"}, "deps": []}]}))
    assert main(["-C", str(git_repo), "run", "--plan", str(plan), "--yes", "--json"]) == 1
    events = check_lines(capsys.readouterr().out)
    s = events[-1]["summary"]
    assert s["reason"] == "round_limit" and s["failed"][0]["task"] == "t1" and "exit code 3" in s["failed"][0]["error"]


def test_json_refuses_to_ask(git_repo, capsys):
    assert main(["-C", str(git_repo), "run", "do it", "--json"]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_json_with_the_bundled_delta_in_a_real_process(git_repo, tiny_model_path):
    """The whole loop with the real model, in a child process: stdout holds only JSON Lines,
    the last one the summary, whatever the 135M model plans."""
    proc = subprocess.run(
        [sys.executable, "-m", "agx", "-C", str(git_repo), "--set", "roles.delta.n_ctx=2048", "--set",
         "roles.delta.n_threads=2", "--set", "roles.delta.sampling.max_tokens=300", "--set", "agent.max_rounds=2",
         "--set", "roles.echo.n_ctx=2048", "--set", "roles.echo.sampling.max_tokens=32",
         "run", "show the README", "--yes", "--json"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    events = check_lines(proc.stdout)
    assert events[0]["event"] == "RoundStarted" and events[0]["request"] == "show the README"
    assert events[-1]["summary"]["reason"] in ("done", "round_limit", "gave_up", "planning_failed")
    assert (proc.returncode == 0) == (events[-1]["summary"]["reason"] == "done")
    assert "Traceback" not in proc.stderr


def test_the_clis_approval_callback_refuses_what_it_cannot_ask_and_the_loop_stops(git_repo, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "mixed", "tasks": [
        {"id": "t1", "title": "read", "tool": "read_files", "args": {"paths": ["README.md"]}, "deps": []},
        {"id": "t2", "title": "write", "tool": "write_file", "args": {"path": "x.txt", "content": "x"}, "deps": []}]}))
    assert main(["-C", str(git_repo), "run", "--plan", str(plan), "--auto", "read", "--json"]) == 1
    captured = capsys.readouterr()
    events = check_lines(captured.out)
    assert "not approved (no terminal to ask): t2" in captured.err
    assert any(e["event"] == "TaskFinished" and e["task_id"] == "t1" for e in events)
    assert any(e["event"] == "TaskSkipped" and e["task_id"] == "t2" and e["reason"] == "not approved" for e in events)
    assert events[-1]["summary"]["reason"] == "stopped"
