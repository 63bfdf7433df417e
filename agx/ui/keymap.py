"""Every shell action: its default key, what it does, and when it applies.

Bindings carry `id=<action name>`, so `[ui.keymap]` in agx.toml (action = "key", several keys
comma-separated) maps straight onto Textual's `App.set_keymap`. The footer, the `?` screen and
the command palette all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class ShellAction:
    name: str
    key: str
    description: str
    group: str  # chat | review | running | after | general
    show: bool = True  # listed in the footer


ACTIONS: tuple[ShellAction, ...] = (
    ShellAction("approve_all", "a", "Approve all", "review"),
    ShellAction("toggle_task", "space", "Approve/skip task", "review"),
    ShellAction("edit_task", "e", "Edit task args", "review"),
    ShellAction("delete_task", "d", "Delete task", "review"),
    ShellAction("replan", "r", "Replan with feedback", "review"),
    ShellAction("reject", "x", "Reject plan", "review"),
    ShellAction("cancel_task", "c", "Cancel task", "running"),
    ShellAction("cancel_all", "C", "Cancel all", "running"),
    ShellAction("pause", "p", "Pause/resume", "running"),
    ShellAction("apply", "y", "Apply to your branch", "after"),
    ShellAction("discard", "n", "Discard plan", "after"),
    ShellAction("undo", "u", "Undo apply", "after"),
    ShellAction("show_diff", "v", "Plan diff / task diff", "after"),
    ShellAction("stop", "escape", "Stop answer / leave input", "general", show=False),
    ShellAction("focus_input", "i", "Type a message", "general"),
    ShellAction("help", "question_mark,f1", "Help", "general"),
    ShellAction("quit", "ctrl+q", "Quit", "general"),
)
ACTION_NAMES = {a.name for a in ACTIONS}
GROUP_TITLES = {
    "review": "Reviewing a plan",
    "running": "While a plan runs",
    "after": "After a run",
    "general": "Anywhere",
}


def bindings() -> list[Binding]:
    out = []
    for a in ACTIONS:
        # escape/ctrl+q/f1 must work from the input too: priority bindings run before the
        # focused widget sees the key. Letters must not (they are typed into the input).
        priority = a.name in ("quit", "stop")
        out.append(Binding(a.key, a.name, a.description, show=a.show, id=a.name, priority=priority))
    return out


def check_keymap(keymap: dict[str, str]) -> list[str]:
    """Problems with a user keymap, one line each (unknown action names, empty keys)."""
    problems = []
    for name, keys in keymap.items():
        if name not in ACTION_NAMES:
            problems.append(f"ui.keymap.{name}: unknown action (actions: {', '.join(sorted(ACTION_NAMES))})")
        elif not str(keys).strip():
            problems.append(f"ui.keymap.{name}: empty key")
    return problems


def display_key(keys: str) -> str:
    names = {"question_mark": "?", "space": "space", "escape": "esc"}
    return " / ".join(names.get(k.strip(), k.strip()) for k in keys.split(","))
