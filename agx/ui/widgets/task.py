"""The task pane: the selected task's tool, arguments, dependencies, status and live output.

Output goes to `OutputLog`, a line-API ScrollView that renders only the visible lines, so a
task printing 100,000 lines stays fluid. Every task's output is kept (up to the executor's own
cap) so that moving the selection re-fills the log from memory.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from agx.ui import plan_view as pv
from agx.ui.widgets.output_log import OutputLog
from agx.ui.widgets.plan import STATUS_WORDS

MAX_LOG_LINES = 200_000


class TaskPane(Vertical):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.task_id: str | None = None
        self.outputs: dict[str, list[str]] = {}

    def compose(self) -> ComposeResult:
        yield Static("No task selected.", id="task-header")
        yield OutputLog(max_lines=MAX_LOG_LINES, id="task-log")

    @property
    def log_widget(self) -> OutputLog:
        return self.query_one("#task-log", OutputLog)

    def show_task(self, tv: pv.TaskView | None) -> None:
        """Describe `tv` and fill the log with its output so far."""
        header = self.query_one("#task-header", Static)
        log = self.log_widget
        new_id = tv.id if tv is not None else None
        if new_id != self.task_id:
            log.clear()
            if new_id is not None and self.outputs.get(new_id):
                log.write("".join(self.outputs[new_id]))
        self.task_id = new_id
        if tv is None:
            header.update("No task selected.")
            return
        header.update(self.describe(tv))

    @staticmethod
    def describe(tv: pv.TaskView) -> Text:
        t = tv.task
        text = Text()
        text.append(f"{tv.id}", style="bold")
        text.append(f"  {t.get('tool', '?')}", style="cyan")
        text.append(f"  {STATUS_WORDS.get(tv.status, tv.status)}", style="italic")
        elapsed = tv.elapsed()
        if elapsed is not None:
            text.append(f"  {elapsed:.1f}s", style="dim")
        if t.get("title"):
            text.append(f"\n{t['title']}")
        deps = t.get("deps") or []
        text.append(f"\ndeps: {', '.join(deps) if deps else '—'}", style="dim")
        args = json.dumps(t.get("args", {}), ensure_ascii=False)
        if len(args) > 400:
            args = args[:400] + "…"
        text.append(f"\nargs: {args}", style="")
        if tv.commit:
            text.append(f"\ncommit: {tv.commit[:12]}", style="green")
        if tv.error:
            text.append(f"\n{tv.error}", style="red")
        return text

    def add_output(self, task_id: str, text: str) -> None:
        """Keep `text` for `task_id`; write it to the log if that task is shown."""
        self.outputs.setdefault(task_id, []).append(text)
        if task_id == self.task_id:
            self.log_widget.write(text)

    def set_output(self, task_id: str, text: str) -> None:
        """Replace a task's kept output (e.g. the executor's final, capped text on resume)."""
        self.outputs[task_id] = [text] if text else []
        if task_id == self.task_id:
            self.log_widget.clear()
            if text:
                self.log_widget.write(text)
