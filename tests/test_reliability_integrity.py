"""Issue 13: nothing lost, nothing leaked, nothing left running.

Every test here drives the real `agx` command in a subprocess against a real git repository,
and kills with real SIGKILL at steps agx records (the AGX_TEST_KILL_AT hook,
agx/workspace/crashpoints.py). Each one fails on the code before the fix:
- a kill during worktree creation left a locked worktree with an all-zero HEAD (git fsck 8);
- `agx apply` of a file whose name is not UTF-8 committed nothing and said "applied";
- a task process spawned just before agx died survived recovery, and a stale record with a
  reused process id made recovery SIGKILL an unrelated process;
- request bytes that are not UTF-8 crashed the session log and left the plan "running";
- plan refs lived in refs/heads (so `git push --all` published them), with untracked `.env`s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

PLAN_ID = re.compile(r"^p\d{6}-\d{6}-[0-9a-f]{4}$")


def git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=check, capture_output=True, text=True).stdout.strip()


def agx(repo: Path, *args, env: dict | None = None, stdin: bytes | None = None, timeout: float = 120):
    """The real CLI in a subprocess (args may be bytes: argv that is not UTF-8)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "agx", "-C", str(repo), *args], env=full_env,
                          input=stdin if stdin is not None else b"", capture_output=True, timeout=timeout)


def write_plan(tmp_path: Path, tasks: list[dict], name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"goal": "reliability", "tasks": tasks}))
    return path


def records(repo: Path) -> list[dict]:
    from agx.workspace.plan_store import PlanStore

    return [r.__dict__ for r in PlanStore(repo).all()]


def agx_worktrees(repo: Path) -> list[str]:
    """Worktrees git has registered under .agx/worktrees (real paths)."""
    out = git(repo, "worktree", "list", "--porcelain")
    ours = os.path.realpath(repo / ".agx" / "worktrees")
    paths = [os.path.realpath(line[len("worktree "):]) for line in out.splitlines() if line.startswith("worktree ")]
    return [p for p in paths if os.path.dirname(p) == ours]


def agx_refs(repo: Path) -> list[str]:
    """refs/agx/*, and branches agx/<plan-id> (what agx before refs/agx made)."""
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/agx", "refs/heads/agx").split()
    return [r for r in refs if r.startswith("refs/agx/") or PLAN_ID.match(r.rsplit("/", 1)[-1])]


def assert_repository_clean_and_known(repo: Path) -> None:
    """git fsck is clean; every agx worktree and ref belongs to a plan record that names it."""
    fsck = subprocess.run(["git", "fsck", "--no-progress"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0, f"git fsck exit {fsck.returncode}: {fsck.stderr or fsck.stdout}"
    recs = records(repo)
    known_worktrees = {os.path.realpath(repo / r["worktree"]) for r in recs if r["worktree"]}
    known_refs = {r["branch"] for r in recs if r["branch"]}
    assert set(agx_worktrees(repo)) <= known_worktrees, "a worktree agx does not know about"
    assert set(agx_refs(repo)) <= known_refs, "a ref agx does not know about"
    # Nothing half-made is left among what agx knows: each known worktree checks out.
    for path in agx_worktrees(repo):
        assert subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=path, capture_output=True).returncode == 0
    assert not list((repo / ".git").glob("worktrees/*/locked")), "a locked (half-made) worktree is left"


def user_state(repo: Path) -> dict:
    git(repo, "status")  # settle the index's stat cache before comparing its bytes
    return {
        "index": (repo / ".git" / "index").read_bytes(),
        "head": git(repo, "rev-parse", "HEAD"),
        "status": git(repo, "status", "--porcelain"),
        "files": {p: (repo / p).read_bytes() for p in ("README.md", "src/app.py", "notes.txt")},
    }


WRITE_PLAN = [{"id": "w", "title": "write", "tool": "write_file", "args": {"path": "made.txt", "content": "made\n"},
               "deps": []}]

# -- 1. a kill at every step of worktree creation ------------------------------------------
STEPS = ["snapshot", "intent", "ref", "worktree-add", "worktree", "ready"]


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_step_of_worktree_creation_is_recovered(git_repo, tmp_path, step):
    repo = git_repo
    (repo / "README.md").write_text("# demo\n\nmy uncommitted edit\n")
    (repo / "notes.txt").write_text("untracked notes\n")
    if step == "worktree-add":
        # Enough files that git's checkout takes a moment: the hook kills git inside it.
        (repo / "many").mkdir()
        for i in range(1500):
            (repo / "many" / f"f{i}.txt").write_text(f"{i}\n")
        git(repo, "add", "many")
        git(repo, "commit", "-q", "-m", "many files")
    before = user_state(repo)
    plan = write_plan(tmp_path, WRITE_PLAN)

    killed = agx(repo, "run", "--plan", str(plan), "--yes", env={"AGX_TEST_KILL_AT": step})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr.decode())
    if step == "worktree-add":
        # The state the issue reported: a locked worktree, unknown to git's prune, breaking fsck.
        (locked,) = (repo / ".git" / "worktrees").glob("*/locked")  # else the hook missed git mid-way
        if (locked.parent / "HEAD").read_text().strip() == "0" * 40:  # most runs: killed before git set HEAD
            fsck = subprocess.run(["git", "fsck", "--no-progress"], cwd=repo, capture_output=True)
            assert fsck.returncode != 0, "a half-made worktree breaks git fsck (without agx's recovery)"

    # The next agx command recovers.
    after = agx(repo, "plans")
    assert after.returncode == 0, after.stderr.decode()
    assert b"Traceback" not in after.stderr
    assert_repository_clean_and_known(repo)
    assert user_state(repo) == before, "the user's files, index and HEAD are untouched"
    recs = records(repo)
    if step == "snapshot":
        assert recs == [] and agx_worktrees(repo) == [] and agx_refs(repo) == []
    else:
        (rec,) = recs
        assert rec["state"] == "interrupted"
        if step == "ready":  # a complete worktree stays for inspection, known to agx
            assert agx_worktrees(repo) and agx_refs(repo) == [f"refs/agx/{rec['plan_id']}"]
        else:  # a half-made one is gone, with its ref
            assert agx_worktrees(repo) == [] and agx_refs(repo) == [] and rec["worktree"] is None
            assert not (repo / ".agx" / "worktrees" / rec["plan_id"]).exists()
        assert agx(repo, "discard", rec["plan_id"]).returncode == 0
        assert agx_worktrees(repo) == [] and agx_refs(repo) == []
    assert subprocess.run(["git", "gc", "-q"], cwd=repo, capture_output=True).returncode == 0
    # And the repository still runs plans.
    again = agx(repo, "run", "--plan", str(plan), "--yes")
    assert again.returncode == 0, again.stderr.decode()
    assert_repository_clean_and_known(repo)


def test_half_made_worktree_of_an_older_agx_without_a_record_is_removed(git_repo):
    """What agx before this fix left after such a kill: a locked worktree with a zero HEAD and
    an agx/<id> branch, and no plan record. The next start removes both."""
    repo = git_repo
    plan_id = "p261130-120000-abcd"
    git(repo, "worktree", "add", "-q", "-b", f"agx/{plan_id}", f".agx/worktrees/{plan_id}", "HEAD")
    admin = repo / ".git" / "worktrees" / plan_id
    (admin / "locked").write_text("initializing")
    (admin / "HEAD").write_text("0" * 40 + "\n")
    assert subprocess.run(["git", "fsck", "--no-progress"], cwd=repo, capture_output=True).returncode != 0
    subprocess.run(["git", "worktree", "prune"], cwd=repo, check=True)
    assert admin.exists(), "git's own prune leaves a locked worktree"
    # A branch of the user's under agx/ whose name is not a plan id stays.
    git(repo, "branch", "agx/mine")

    assert agx(repo, "plans").returncode == 0
    assert_repository_clean_and_known(repo)
    assert not admin.exists() and not (repo / ".agx" / "worktrees" / plan_id).exists()
    assert agx_refs(repo) == []
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/agx") == "refs/heads/agx/mine"


# -- 2. apply carries file names that are not UTF-8 ----------------------------------------
LATIN1_NAME = b"caf\xe9.txt"  # "café.txt" in Latin-1: not valid UTF-8


def test_apply_carries_a_file_name_that_is_not_utf8(git_repo, tmp_path):
    repo = git_repo
    plan = write_plan(tmp_path, [{"id": "mk", "title": "make a Latin-1 name", "tool": "shell",
                                  "args": {"command": "printf 'latin\\n' > \"$(printf 'caf\\351.txt')\""},
                                  "deps": []}])
    run = agx(repo, "run", "--plan", str(plan), "--yes")
    assert run.returncode == 0, run.stderr.decode()
    (rec,) = records(repo)
    ref = f"refs/agx/{rec['plan_id']}"
    plan_diff = subprocess.run(["git", "diff", "--raw", "-z", "--no-abbrev", rec["base_commit"], ref], cwd=repo,
                               capture_output=True, check=True).stdout
    assert LATIN1_NAME in plan_diff

    applied = agx(repo, "apply")
    assert applied.returncode == 0, applied.stderr.decode()
    assert b"applied plan" in applied.stdout and b"caf\\xe9.txt" in applied.stdout
    with open(os.fsencode(repo) + b"/" + LATIN1_NAME, "rb") as fh:
        assert fh.read() == b"latin\n"
    # The commit on the user's branch is exactly the plan's diff (it was empty before the fix).
    head_diff = subprocess.run(["git", "diff", "--raw", "-z", "--no-abbrev", "HEAD~1", "HEAD"], cwd=repo,
                               capture_output=True, check=True).stdout
    assert head_diff == plan_diff
    assert git(repo, "status", "--porcelain") == ""
    # And undo takes it back out.
    assert agx(repo, "undo").returncode == 0
    assert not os.path.exists(os.fsencode(repo) + b"/" + LATIN1_NAME)


def test_apply_refuses_and_rolls_back_when_the_result_differs_from_the_plan(git_repo, tmp_path):
    """The apply's own check: a plan whose diff cannot be reproduced exactly is refused with
    the path named, and nothing changes (here a clean/smudge filter the user added after the
    plan ran rewrites the file on its way in, so the checkout would not hold the plan's bytes)."""
    repo = git_repo
    plan = write_plan(tmp_path, [{"id": "w", "title": "write", "tool": "write_file",
                                  "args": {"path": "data.txt", "content": "plan's bytes\n"}, "deps": []}])
    assert agx(repo, "run", "--plan", str(plan), "--yes").returncode == 0
    (repo / ".git" / "info" / "attributes").write_text("data.txt filter=upper\n")
    git(repo, "config", "filter.upper.clean", "tr a-z A-Z")
    head = git(repo, "rev-parse", "HEAD")
    out = agx(repo, "apply")
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    assert b"data.txt" in out.stderr and b"rolled back" in out.stderr
    assert git(repo, "rev-parse", "HEAD") == head and not (repo / "data.txt").exists()
    assert git(repo, "status", "--porcelain") == ""


# -- 3. task processes never outlive recovery; nothing else is ever killed -----------------
def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_task_process_spawned_just_before_agx_dies_is_killed_by_recovery(git_repo, tmp_path):
    repo = git_repo
    # In the worktree: the sandbox lets a command write nowhere else.
    plan = write_plan(tmp_path, [{"id": "long", "title": "sleep", "tool": "shell",
                                  "args": {"command": "echo $$ > task.pid.tmp && mv task.pid.tmp task.pid; "
                                                      "exec sleep 600"}, "deps": []}])
    pid = None
    try:
        killed = agx(repo, "run", "--plan", str(plan), "--yes", env={"AGX_TEST_KILL_AT": "spawned"})
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
        pidfile = repo / records(repo)[0]["worktree"] / "task.pid"
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = int(pidfile.read_text())
        assert _alive(pid), "the task's process outlives agx (agx never recorded its group)"
        (rec,) = records(repo)
        assert "pgid" not in rec["tasks"].get("long", {}), "the kill came before the group was recorded"

        assert agx(repo, "plans").returncode == 0
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "recovery kills the run's processes"
        (rec,) = records(repo)
        assert rec["state"] == "interrupted" and rec["tasks"]["long"]["status"] == "interrupted"
    finally:
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_stale_record_with_a_reused_pid_never_kills_an_unrelated_process(git_repo):
    from agx.workspace.plan_store import PlanRecord, PlanStore

    repo = git_repo
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)  # pgid == its pid
    try:
        gone = subprocess.Popen(["true"])
        gone.wait()
        started = psutil.Process(bystander.pid).create_time()
        store = PlanStore(repo)
        store.save(PlanRecord(
            plan_id="p261130-120000-0001", state="running", pid=gone.pid, run_token="not-the-bystanders",
            tasks={"t": {"status": "running", "pgid": bystander.pid, "pgid_start": started - 3600}}))
        # An older agx's record: a pgid and no start time to prove it by.
        store.save(PlanRecord(
            plan_id="p261130-120000-0002", state="running", pid=gone.pid,
            tasks={"t": {"status": "running", "pgid": bystander.pid}}))

        out = agx(repo, "plans")
        assert out.returncode == 0, out.stderr.decode()
        assert [r["state"] for r in records(repo)] == ["interrupted", "interrupted"]
        time.sleep(0.2)
        assert bystander.poll() is None and _alive(bystander.pid), "an unrelated process was killed"
    finally:
        bystander.kill()
        bystander.wait()


# -- 4. bytes that are not UTF-8 in a request ----------------------------------------------
def test_session_log_writes_any_string(tmp_path):
    from agx.workspace.sessionlog import SessionLog, read_records

    log = SessionLog(tmp_path / "s.jsonl", "s")
    cyclic: dict = {}
    cyclic["self"] = cyclic
    log.append("chat", text="hello \udcff\udcfe", lone="\ud800", ok="café")
    log.append("weird", value=cyclic)
    log.append("after", n=1)
    recs = list(read_records(tmp_path / "s.jsonl"))
    assert [r["type"] for r in recs] == ["chat", "weird", "after"]
    assert recs[0]["text"] == "hello \udcff\udcfe" and recs[0]["lone"] == "\ud800" and recs[0]["ok"] == "café"
    assert "unwritable" in recs[1]


def test_run_with_a_request_that_is_not_utf8_fails_cleanly_and_leaves_no_running_plan(git_repo):
    """`agx run $'hello \\xff\\xfe'`: the request reaches the planner (the bundled model, with a
    token budget too small for a plan) as text with U+FFFD, is logged, and the plan ends
    "failed" with its worktree removed — no UnicodeEncodeError, nothing left "running"."""
    repo = git_repo
    out = subprocess.run(
        [sys.executable, "-m", "agx", "-C", str(repo), "--set", "roles.delta.sampling.max_tokens=24",
         "--set", "roles.delta.n_ctx=2048", "--set", "roles.delta.n_threads=2", "--set", "execution.repair_rounds=0", "run", b"hello \xff\xfe", "--yes"],
        capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert b"Traceback" not in out.stderr and b"UnicodeEncodeError" not in out.stderr, out.stderr.decode()
    assert out.returncode == 1
    (rec,) = records(repo)
    assert rec["state"] == "failed" and rec["request"] == "hello \ufffd\ufffd"
    assert agx_worktrees(repo) == [] and agx_refs(repo) == []
    log = next((repo / ".agx" / "sessions").glob("*.jsonl")).read_bytes().decode("utf-8")
    assert "hello \ufffd\ufffd" in log


@pytest.mark.parametrize("how", ["argv", "stdin"])
def test_plan_with_bytes_that_are_not_utf8(git_repo, how):
    repo = git_repo
    args = ["plan"] + ([b"hello \xff\xfe"] if how == "argv" else [])
    out = subprocess.run([sys.executable, "-m", "agx", "-C", str(repo),
                          "--set", "roles.delta.sampling.max_tokens=24", "--set", "roles.delta.n_ctx=2048",
                          "--set", "execution.repair_rounds=0", *args],
                         input=b"hello \xff\xfe" if how == "stdin" else b"", capture_output=True, timeout=300)
    assert b"Traceback" not in out.stderr and b"UnicodeEncodeError" not in out.stderr, out.stderr.decode()
    assert out.returncode == 1  # 24 tokens make no plan: a clean failure, not a crash
    log = next((repo / ".agx" / "sessions").glob("*.jsonl")).read_bytes().decode("utf-8")
    assert "hello \ufffd\ufffd" in log


@pytest.mark.parametrize("how", ["argv", "stdin"])
def test_chat_with_bytes_that_are_not_utf8(git_repo, how):
    repo = git_repo
    args = ["chat", "--max-tokens", "4"] + ([b"hello \xff\xfe"] if how == "argv" else [])
    out = subprocess.run([sys.executable, "-m", "agx", "-C", str(repo),
                          "--set", "roles.echo.n_ctx=2048", *args],
                         input=b"hello \xff\xfe" if how == "stdin" else b"", capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    assert b"Traceback" not in out.stderr
    log = next((repo / ".agx" / "sessions").glob("*.jsonl")).read_bytes().decode("utf-8")
    assert "hello \ufffd\ufffd" in log


# -- 8. plan refs stay out of pushes; untracked secrets stay out of plan commits -----------
def test_plan_refs_are_not_branches_and_push_all_publishes_none(git_repo, tmp_path):
    repo = git_repo
    (repo / ".env").write_text("API_KEY=hunter2\n")
    (repo / "config").mkdir()
    (repo / "config" / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (repo / ".env.example").write_text("API_KEY=\n")  # a template: meant to be shared
    (repo / "notes.txt").write_text("untracked, not secret\n")
    plan = write_plan(tmp_path, [
        {"id": "w", "title": "write", "tool": "write_file", "args": {"path": "made.txt", "content": "x\n"}, "deps": []},
        {"id": "s", "title": "look", "tool": "shell", "args": {"command": "ls -a > seen.txt"}, "deps": []}])
    run = agx(repo, "run", "--plan", str(plan), "--yes")
    assert run.returncode == 0, run.stderr.decode()
    assert b"kept out of the plan" in run.stderr and b".env" in run.stderr and b"config/server.pem" in run.stderr

    (rec,) = records(repo)
    ref = f"refs/agx/{rec['plan_id']}"
    assert rec["branch"] == ref and rec["excluded"] == [".env", "config/server.pem"]
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/heads") == "refs/heads/main"
    in_commit = git(repo, "ls-tree", "-r", "--name-only", ref).split()
    assert ".env" not in in_commit and "config/server.pem" not in in_commit
    assert ".env.example" in in_commit and "notes.txt" in in_commit and "made.txt" in in_commit
    assert ".env" not in git(repo, "show", f"{ref}:seen.txt").split(), "the tasks never saw it"

    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "--all", "origin")
    git(repo, "push", "-q", "--tags", "origin")
    assert git(remote, "for-each-ref", "--format=%(refname)") == "refs/heads/main"
    # The secret is nowhere in what was pushed, nor in any object agx wrote.
    assert "hunter2" not in subprocess.run(["git", "log", "--all", "-p"], cwd=remote, capture_output=True,
                                           text=True).stdout
    assert "hunter2" not in subprocess.run(["git", "log", "--all", "-p"], cwd=repo, capture_output=True,
                                           text=True).stdout
    # And the user's own files are as they were.
    assert (repo / ".env").read_text() == "API_KEY=hunter2\n"
