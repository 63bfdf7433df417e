"""A test hook: let agx SIGKILL itself at a named step, so tests can prove crash safety.

    AGX_TEST_KILL_AT=<step> agx run --plan plan.json --yes

kills the agx process with SIGKILL (no cleanup, no atexit, exactly like `kill -9`) when it
reaches `<step>`. Steps, in the order a run reaches them:

    snapshot      the snapshot commit exists, nothing is recorded yet
    intent        the plan record (state "running", worktree not ready) is on disk
    ref           refs/agx/<plan-id> exists, the worktree does not
    worktree-add  in the middle of `git worktree add`: git is killed too, as soon as it has
                  created its administrative files (a locked worktree, HEAD all zeros)
    worktree      the worktree is checked out, the record still says "not ready"
    ready         the record says the worktree is ready; no task has started
    spawned       a task's process was started; agx has not yet recorded its process group

The variable is read at each step, never cached; unset (the normal case), a step costs one
dictionary lookup. It exists for tests (tests/test_reliability_integrity.py) and is harmless
otherwise: it can only make agx die the way any `kill -9` would.
"""

from __future__ import annotations

import os
import signal

ENV = "AGX_TEST_KILL_AT"


def armed(step: str) -> bool:
    return os.environ.get(ENV) == step


def crash_point(step: str) -> None:
    """SIGKILL this process now if the test hook names `step`."""
    if os.environ.get(ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
