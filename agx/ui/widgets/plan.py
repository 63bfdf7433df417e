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

    # A long file content or edit under a task shows this many lines, then a pointer to `e`
    # (which shows the task's arguments whole); commands and paths are always shown in full.
    MAX_VALUE_LINES = 12

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
                    self._task_nodes[tid] = self._add_task(branch, view.tasks[tid], view.phase)
        self.root.expand()
        # Tree lines are laid out on the next refresh; move the cursor after it.
        if selected in self._task_nodes:
            self.call_after_refresh(self.move_cursor, self._task_nodes[selected])
        elif self._task_nodes and view.phase != pv.PLANNING:
            self.call_after_refresh(self.move_cursor, next(iter(self._task_nodes.values())))
        self._sync_ticker()

    def _add_task(self, branch: TreeNode, tv: pv.TaskView, phase: str) -> TreeNode:
        """A task's line; under it, for writes and commands, every argument in full (wrapped):
        what `a` or space approves is on screen, never cut. Expanded while planned or reviewed."""
        details = self._arg_lines(tv) if _needs_approval_details(tv.task.get("tool")) else []
        if not details:
            return branch.add_leaf(self._label(tv), data=tv.id)
        node = branch.add(self._label(tv), data=tv.id, expand=phase in (pv.PLANNING, pv.REVIEW))
        for line in details:
            node.add_leaf(line, data=ArgLine(tv.id))
        return node

    def _arg_lines(self, tv: pv.TaskView) -> list[Text]:
        from agx.execution.printer import approval_details

        # The tree indents a detail line by 4 guides; keep the rest of the pane for the text.
        width = max(24, (self.scrollable_content_region.width or 60) - 4 * self.guide_depth - 2)
        args = tv.task.get("args") or {}
        lines: list[Text] = []
        for key, value in args.items():
            block = approval_details({key: value}, width) if isinstance(args, dict) else []
            if key not in ("command", "path", "paths") and len(block) > self.MAX_VALUE_LINES + 1:
                hidden = len(block) - self.MAX_VALUE_LINES
                block = block[: self.MAX_VALUE_LINES] + [f"  … {hidden} more lines (e shows the whole task)"]
            for line in block:
                lines.append(Text(line, style="bold" if key == "command" else "", no_wrap=True))
        return lines

    def on_resize(self) -> None:
        # Detail lines are wrapped to the pane's width: wrap again when it changes.
        if self.view is not None and any(self._task_nodes[t].children for t in self._task_nodes):
            self.show(self.view)

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
        return _task_id_of(node.data) if node is not None else None

    def select_task(self, task_id: str) -> None:
        node = self._task_nodes.get(task_id)
        if node is not None:
            self.call_after_refresh(self.move_cursor, node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        event.stop()
        self.post_message(self.TaskSelected(_task_id_of(event.node.data)))


class ArgLine:
    """`data` of a detail line under a task: selecting it selects its task."""

    __slots__ = ("task_id",)

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id


def _task_id_of(data: object) -> str | None:
    if isinstance(data, str):
        return data
    return data.task_id if isinstance(data, ArgLine) else None


def _needs_approval_details(tool: object) -> bool:
    """Writes and commands (and tools agx does not know, which the executor treats as commands)."""
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.tools import Risk

    spec = builtin_catalogue().get(str(tool)) if tool is not None else None
    return spec is None or spec.risk is not Risk.READ
