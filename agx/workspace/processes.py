"""Which processes are agx's own, proven before any of them is killed.

A run's task processes carry an environment variable `AGX_RUN_TOKEN=<token>`; the token is
random per run and written to the plan record *before* the first task starts. A process
whose environment holds the token was started by that run (or by one of its processes), so
recovery can find and kill every one of them after agx itself was killed — even a process
spawned a moment before agx recorded its group, or one that left the group. Nothing else is
ever killed: a recorded process group is only signalled when its leader still has the start
time that was recorded with it (process ids are reused), or carries the run's token.
"""

from __future__ import annotations

import os
import signal

TOKEN_ENV = "AGX_RUN_TOKEN"


def start_time(pid: int | None) -> float | None:
    """The process's start time (seconds since the epoch), None when there is no such process."""
    if not pid:
        return None
    import psutil

    try:
        return psutil.Process(int(pid)).create_time()
    except (psutil.Error, ValueError, OverflowError):
        return None


def same_start(recorded: float | None, actual: float | None) -> bool:
    # create_time is derived from boot time and clock ticks: allow for rounding.
    return recorded is not None and actual is not None and abs(recorded - actual) < 0.05


def is_running(pid: int | None, started: float | None = None) -> bool:
    """True when `pid` is a live (not zombie) process — and, given `started`, the same process."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or same_start(started, proc.create_time())
    except psutil.AccessDenied:
        return True
    except (psutil.Error, ValueError, OverflowError):
        return False


def carries_token(proc, token: str) -> bool:
    import psutil

    try:
        return proc.environ().get(TOKEN_ENV) == token
    except (psutil.Error, OSError):
        return False


def kill_run_processes(token: str | None, groups: list[tuple[int, float | None]] = ()) -> list[int]:
    """SIGKILL what a dead run left: every process carrying `token`, and each recorded group
    (pgid, leader start time) whose leader is provably the one recorded. Returns the pids hit."""
    import psutil

    killed: list[int] = []
    me = os.getpid()
    if token:
        for proc in psutil.process_iter():
            if proc.pid == me or not carries_token(proc, token):
                continue
            try:
                pgid = os.getpgid(proc.pid)
                # Its whole group, when the group's leader is the run's too (a shell's children).
                if pgid != os.getpgid(me) and carries_token(psutil.Process(pgid), token):
                    os.killpg(pgid, signal.SIGKILL)
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
            except (psutil.Error, ProcessLookupError, PermissionError, OSError):
                continue
    for pgid, started in groups:
        try:
            leader = psutil.Process(int(pgid))
        except (psutil.Error, ValueError, OverflowError):
            continue  # the leader is gone: its group's members were found by token, if any
        if not (same_start(started, start_time(pgid)) or (token and carries_token(leader, token))):
            continue  # a reused process id: not ours, never signalled
        try:
            os.killpg(int(pgid), signal.SIGKILL)
            killed.append(int(pgid))
        except (ProcessLookupError, PermissionError, OSError):
            pass
    return killed
