"""The plan pane: the DAG as a tree of levels (tasks in one level can run at once).

Each task line shows its status glyph (a spinner while running), id, tool, title, elapsed time,
and a ★ when it is on the critical path. The pane is rebuilt when the plan's structure changes
and relabelled in place on status changes; a 10 Hz timer animates spinners and elapsed times
only while something runs.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from agx.ui import plan_view as pv

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
GLYPHS = {
    pv.AWAITING: ("?", "yellow"),
    pv.APPROVED: ("✓", "green"),
    pv.DENIED: ("–", "dim"),
    pv.PENDING: ("·", "cyan"),
    pv.DONE: ("✔", "bold green"),
    pv.FAILED: ("✘", "bold red"),
    pv.SKIPPED: ("↷", "dim"),
    pv.CANCELLED: ("⊘", "red"),
}
STATUS_WORDS = {
    pv.AWAITING: "awaiting approval", pv.APPROVED: "approved", pv.DENIED: "skipped by you",
    pv.PENDING: "pending", pv.RUNNING: "running", pv.DONE: "done", pv.FAILED: "failed",
    pv.SKIPPED: "skipped", pv.CANCELLED: "cancelled",
}
PHASE_WORDS = {
    pv.PLANNING: "Delta is planning…", pv.REVIEW: "awaiting your approval", pv.RUNNING_PHASE: "running",
    pv.FINISHED: "finished", pv.APPLIED: "applied", pv.DISCARDED: "discarded", pv.REJECTED: "rejected",
    pv.UNDONE: "undone",
}


class PlanPane(Tree):
    """A Tree whose leaves carry task ids in `node.data`."""

    # Tree binds space to expand/collapse; here it approves/skips the task (same binding id
    # as the app's, so [ui.keymap] toggle_task remaps both).
    BINDINGS = [Binding("space", "app.toggle_task", "Approve/skip", id="toggle_task")]

    class TaskSelected(Message):
        def __init__(self, task_id: str | None) -> None:
            super().__init__()
            self.task_id = task_id

    def __init__(self, **kwargs) -> None:
        super().__init__("No plan — type /plan <what to change>", **kwargs)
        self.show_root = True
        self.guide_depth = 3
        self.view: pv.PlanView | None = None
        self._task_nodes: dict[str, TreeNode] = {}
        self._frame = 0
        self._ticker = None

    def on_mount(self) -> None:
        self._ticker = self.set_interval(0.1, self._tick, pause=True)

    # -- building ---------------------------------------------------------------------------
    def show(self, view: pv.PlanView | None) -> None:
        """Rebuild the tree for `view`, keeping the cursor on the same task when possible."""
        selected = self.selected_task_id()
        self.view = view
        self.clear()
        self._task_nodes = {}
        if view is None:
            self.root.set_label("No plan — type /plan <what to change>")
            return
        self.root.set_label(self._root_label())
        for i, level in enumerate(view.levels or [list(view.tasks)]):
            branch = self.root.add(Text(f"level {i + 1}", style="dim"), expand=True)
            for tid in level:
                if tid in view.tasks:
                    self._task_nodes[tid] = branch.add_leaf(self._label(view.tasks[tid]), data=tid)
        self.root.expand()
        # Tree lines are laid out on the next refresh; move the cursor after it.
        if selected in self._task_nodes:
            self.call_after_refresh(self.move_cursor, self._task_nodes[selected])
        elif self._task_nodes and view.phase != pv.PLANNING:
            self.call_after_refresh(self.move_cursor, next(iter(self._task_nodes.values())))
        self._sync_ticker()

    def refresh_tasks(self, task_ids: set[str] | None = None) -> None:
        """Relabel some tasks (all when None) and the root."""
        if self.view is None:
            return
        self.root.set_label(self._root_label())
        for tid in (task_ids if task_ids is not None else list(self._task_nodes)):
            node = self._task_nodes.get(tid)
            tv = self.view.tasks.get(tid)
            if node is not None and tv is not None:
                node.set_label(self._label(tv))
        self._sync_ticker()

    def _sync_ticker(self) -> None:
        if self._ticker is None:
            return
        running = self.view is not None and (
            self.view.phase == pv.PLANNING or any(t.status == pv.RUNNING for t in self.view.tasks.values()))
        if running:
            self._ticker.resume()
        else:
            self._ticker.pause()

    def _tick(self) -> None:
        self._frame += 1
        if self.view is None:
            return
        running = {tid for tid, tv in self.view.tasks.items() if tv.status == pv.RUNNING}
        self.refresh_tasks(running)

    # -- labels -----------------------------------------------------------------------------
    def _root_label(self) -> Text:
        v = self.view
        assert v is not None
        text = Text()
        if v.phase == pv.PLANNING:
            text.append(SPINNER[self._frame % len(SPINNER)] + " ", style="yellow")
        text.append(f"plan {v.plan_id}", style="bold")
        text.append(f"  {PHASE_WORDS.get(v.phase, v.phase)}", style="italic")
        if v.paused:
            text.append("  ⏸ paused", style="bold yellow")
        if v.goal:
            text.append(f"  — {v.goal}")
        if v.critical:
            text.append(f"  critical path {len(v.critical)}", style="dim")
        if v.errors:
            text.append(f"  {len(v.errors)} problem(s)", style="bold red")
        return text

    def _label(self, tv: pv.TaskView) -> Text:
        t = tv.task
        text = Text(no_wrap=True, overflow="ellipsis")
        if tv.status == pv.RUNNING:
            text.append(SPINNER[self._frame % len(SPINNER)], style="bold cyan")
        else:
            glyph, style = GLYPHS.get(tv.status, ("?", ""))
            text.append(glyph, style=style)
        text.append(f" {tv.id}", style="bold")
        text.append(f" {t.get('tool', '?')}", style="cyan")
        title = t.get("title") or ""
        if title:
            text.append(f"  {title}")
        elapsed = tv.elapsed(time.monotonic())
        if elapsed is not None:
            text.append(f"  {elapsed:.1f}s", style="dim")
        if self.view is not None and tv.id in self.view.critical and len(self.view.tasks) > 1:
            text.append(" ★", style="yellow")
        if tv.status in (pv.FAILED, pv.SKIPPED, pv.DENIED, pv.CANCELLED):
            text.append(f"  [{STATUS_WORDS[tv.status]}]", style="dim")
        return text

    # -- selection --------------------------------------------------------------------------
    def selected_task_id(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None and isinstance(node.data, str) else None

    def select_task(self, task_id: str) -> None:
        node = self._task_nodes.get(task_id)
        if node is not None:
            self.call_after_refresh(self.move_cursor, node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        event.stop()
        self.post_message(self.TaskSelected(event.node.data if isinstance(event.node.data, str) else None))
