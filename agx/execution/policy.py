"""Approval policy: which tasks may run without asking, and the safe-path rule for file tools.

Risk levels come from the tool catalogue (agx/planning/tools.py):
  READ  — reads the repository (read_files, search, ask_model): may run unapproved when the
          user allows it (`--auto read`), so they can start while the plan is still streaming;
  WRITE — writes files in the plan's worktree; EXEC — runs commands: always need approval
          (`--yes`, or a yes on the terminal).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

from agx.planning.plan import Task
from agx.planning.tools import Risk, ToolSpec


class ApprovalMode(str, enum.Enum):
    ASK = "ask"  # nothing runs before the user says yes on the terminal
    READ = "read"  # read-only tasks approved automatically; the rest asked (or refused headless)
    ALL = "all"  # --yes: everything approved


@dataclass(frozen=True)
class Policy:
    mode: ApprovalMode = ApprovalMode.ASK

    def auto_approves(self, task: Task, spec: ToolSpec | None) -> bool:
        """True when `task` may run without asking anyone."""
        if self.mode is ApprovalMode.ALL:
            return True
        if self.mode is ApprovalMode.READ:
            return spec is not None and spec.risk is Risk.READ
        return False

    @classmethod
    def from_flags(cls, yes: bool, auto: str | None) -> "Policy":
        if yes:
            return cls(ApprovalMode.ALL)
        if auto == "read":
            return cls(ApprovalMode.READ)
        return cls(ApprovalMode.ASK)


class UnsafePath(ValueError):
    """A file tool was given a path outside the worktree."""


def resolve_in_worktree(root: Path, rel: str, *, for_write: bool = False) -> Path:
    """The absolute path of `rel` inside `root`, refusing anything that escapes it.

    Refused: empty paths, absolute paths, any `..` component, paths whose resolved location
    (symlinks followed) leaves `root`, and anything inside `.git` (a write there could
    rewrite history or hooks).
    """
    if not isinstance(rel, str) or not rel.strip():
        raise UnsafePath("empty path")
    if "\x00" in rel:
        raise UnsafePath(f"{rel!r}: NUL byte in path")
    p = Path(rel)
    if p.is_absolute() or rel.startswith("~"):
        raise UnsafePath(f"{rel}: absolute paths are not allowed; use a path relative to the repository")
    if ".." in p.parts:
        raise UnsafePath(f"{rel}: '..' is not allowed in paths")
    if p.parts and p.parts[0] == ".git":
        raise UnsafePath(f"{rel}: agx does not touch .git")
    root_real = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root_real / p))
    if target != root_real and root_real not in target.parents:
        raise UnsafePath(f"{rel}: resolves outside the repository (symlink to {target})")
    if for_write and target == root_real:
        raise UnsafePath(f"{rel}: is the repository root, not a file")
    return root_real / p


async def decide_while_running(executor, run_task, ask) -> None:
    """Ask about the tasks the policy left undecided while the run goes on, then apply the answer.

    `ask(undecided) -> (approved, denied)` is the front end's question (a coroutine function), or
    None to deny them all. Read-only tasks keep running meanwhile; if the run ends first (every
    approved path done, or cancelled), the question is dropped. One place for the shell's agent
    session and `agx run --plan`.
    """
    import asyncio

    undecided = executor.undecided()
    if not undecided or run_task.done():
        return
    if ask is None:
        executor.deny(undecided)
        return
    question = asyncio.ensure_future(ask(undecided))
    done, _ = await asyncio.wait({question, run_task}, return_when=asyncio.FIRST_COMPLETED)
    if question in done:
        approved, denied = question.result()
        executor.approve(approved)
        executor.deny(denied)
    else:
        question.cancel()
