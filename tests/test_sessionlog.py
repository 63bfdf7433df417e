"""The session log survives torn writes and keeps .agx/ out of git."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from agx.workspace.sessionlog import ReadReport, SessionLog, latest_session, read_records


def test_append_and_read(git_repo):
    log = SessionLog.open(git_repo)
    log.append("chat", role="echo", response="hi")
    log.append("plan", plan={"goal": "x", "tasks": []})
    recs = list(log.records())
    assert [r["type"] for r in recs] == ["chat", "plan"]
    assert recs[0]["session"] == log.session_id and recs[0]["v"] == 1
    assert latest_session(git_repo) == log.path


def test_state_dir_is_excluded_from_git(git_repo):
    SessionLog.open(git_repo).append("chat", response="x")
    SessionLog.open(git_repo).append("chat", response="y")
    exclude = (git_repo / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/.agx/") == 1
    status = subprocess.run(["git", "status", "--porcelain"], cwd=git_repo, capture_output=True, text=True).stdout
    assert ".agx" not in status


def test_torn_last_line_is_skipped_and_next_append_starts_clean(git_repo):
    log = SessionLog.open(git_repo)
    log.append("chat", response="first")
    with open(log.path, "ab") as fh:  # what a crash in the middle of a write leaves behind
        fh.write(b'{"v": 1, "type": "chat", "respo')
    report = ReadReport()
    assert [r["response"] for r in read_records(log.path, report)] == ["first"]
    assert report.skipped == 1
    log.append("chat", response="second")
    report = ReadReport()
    assert [r["response"] for r in read_records(log.path, report)] == ["first", "second"]
    assert report.skipped == 1


def test_killed_writer_never_breaks_the_log(git_repo):
    """A process appending in a loop is killed with SIGKILL; every surviving line parses."""
    code = (
        "import sys; from pathlib import Path; from agx.workspace.sessionlog import SessionLog\n"
        "log = SessionLog.open(Path(sys.argv[1]), 'killed')\n"
        "i = 0\n"
        "while True:\n"
        "    log.append('chat', i=i, response='x' * 5000); i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(git_repo)])
    path = git_repo / ".agx" / "sessions" / "killed.jsonl"
    deadline = time.time() + 30
    while time.time() < deadline and (not path.exists() or path.stat().st_size < 200_000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    report = ReadReport()
    records = list(read_records(path, report))
    assert len(records) >= 20
    assert [r["i"] for r in records] == list(range(len(records)))
    assert report.skipped <= 1
    # And the file is valid JSON Lines for any other reader, after the next append.
    SessionLog(path, "killed").append("chat", i=-1)
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    parsed = 0
    for line in lines:
        try:
            json.loads(line)
            parsed += 1
        except json.JSONDecodeError:
            pass
    assert parsed == len(records) + 1
