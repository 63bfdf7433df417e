"""The git pane: branch, short status, and a diff (the selected task's commit, or the whole
plan's branch against where it started). Data is read in a thread by agx.ui.gitview and handed
to `show`; the pane only renders."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, Static

from agx.ui.gitview import GitSnapshot

MAX_DIFF_LINES = 5000


class GitPane(Vertical):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.snapshot: GitSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Static("git: …", id="git-header")
        yield RichLog(max_lines=MAX_DIFF_LINES, id="git-diff", wrap=False, highlight=False, markup=False)

    def show(self, snap: GitSnapshot) -> None:
        old = self.snapshot
        self.snapshot = snap
        header = Text(no_wrap=False)
        if snap.error:
            header.append(snap.error, style="yellow")
        else:
            header.append(f" {snap.branch}", style="bold magenta")
            if snap.head:
                header.append(f" @ {snap.head[:8]}", style="dim")
            changed = [line for line in snap.status.splitlines() if line.strip()]
            header.append(f"  {len(changed)} changed" if changed else "  clean", style="yellow" if changed else "green")
            for line in changed[:6]:
                header.append(f"\n{line}", style="dim")
            if len(changed) > 6:
                header.append(f"\n… {len(changed) - 6} more", style="dim")
            if snap.diff_title:
                header.append(f"\n{snap.diff_title}", style="italic")
        self.query_one("#git-header", Static).update(header)
        if old is not None and old.diff == snap.diff:
            return
        log = self.query_one("#git-diff", RichLog)
        log.clear()
        for line in snap.diff.splitlines()[:MAX_DIFF_LINES]:
            log.write(_diff_line(line))


def _diff_line(line: str) -> Text:
    if line.startswith("+") and not line.startswith("+++"):
        return Text(line, style="green")
    if line.startswith("-") and not line.startswith("---"):
        return Text(line, style="red")
    if line.startswith("@@"):
        return Text(line, style="cyan")
    if line.startswith(("diff ", "commit ", "index ", "+++", "---")):
        return Text(line, style="bold")
    return Text(line)
