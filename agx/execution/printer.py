"""The headless view of the event stream: live progress lines, the plan, and the summary."""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from typing import TextIO

from agx import events as ev
from agx.planning.plan import Plan
from agx.planning.tools import ToolCatalogue


def plan_levels(plan: Plan) -> list[list[str]]:
    """Tasks grouped by depth (level n needs only levels < n); tasks in a cycle come last.

    Linear in tasks + edges (Kahn's algorithm by waves): a 10,000-task plan is printed
    before it runs, and the earlier level-by-level rescan was quadratic."""
    ids = [t.id for t in plan.tasks]
    known = set(ids)
    deps = {t.id: [d for d in dict.fromkeys(t.deps) if d in known] for t in plan.tasks}
    waiting = {i: len(ds) for i, ds in deps.items()}
    children: dict[str, list[str]] = {}
    for i, ds in deps.items():
        for d in ds:
            children.setdefault(d, []).append(i)
    depth: dict[str, int] = {}
    level = 0
    wave = [i for i, n in waiting.items() if n == 0]
    while wave:
        following = []
        for i in wave:
            depth[i] = level
            for c in children.get(i, ()):
                waiting[c] -= 1
                if waiting[c] == 0:
                    following.append(c)
        wave = following
        level += 1
    stuck = [i for i in deps if i not in depth]
    if stuck:  # a cycle (or tasks waiting on one): show them rather than loop forever
        for i in stuck:
            depth[i] = level
        level += 1
    out: list[list[str]] = [[] for _ in range(level)]
    for i in ids:
        out[depth[i]].append(i)
    return out


def _brief_args(args: dict, limit: int = 60) -> str:
    for key in ("command", "path", "paths", "pattern", "prompt", "message"):
        if key in args:
            v = args[key]
            text = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
            text = " ".join(text.split())
            return text if len(text) <= limit else text[: limit - 1] + "…"
    return ""


def visible(text: str) -> str:
    """`text` with every control or invisible format character (carriage return, escape
    sequences, bidi overrides, zero-width spaces) written as an escape, so what a terminal shows
    is what will run; newlines and tabs (which move the cursor on but hide nothing) stay."""
    out = []
    for ch in text:
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def wrap_exact(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters that, joined, give back every character of `text`
    (a line breaks after a space when one is in its second half, else mid-word); each newline
    in `text` starts a new line. Nothing is dropped or cut, unlike textwrap."""
    width = max(width, 8)
    out: list[str] = []
    for line in text.split("\n"):
        while len(line) > width:
            cut = line.rfind(" ", width // 2, width)
            cut = cut + 1 if cut != -1 else width
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return out


def _arg_items(args: dict):
    """(label, text) for every argument, lists of objects (edit_file's edits) flattened."""
    for key, value in args.items():
        if isinstance(value, str):
            yield key, value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            yield key, "\n".join(value)
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value, 1):
                for k, v in item.items():
                    yield f"{key}[{i}].{k}", v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        else:
            yield key, json.dumps(value, ensure_ascii=False)


def approval_details(args: dict, width: int = 100) -> list[str]:
    """Every argument of a task, in full, wrapped to `width`: what the user approves. A
    one-line value that fits stays beside its name; anything else goes below it, indented.
    Control characters are shown as escapes (see `visible`)."""
    lines: list[str] = []
    for label, text in _arg_items(args):
        text = visible(text)
        if "\n" not in text and len(label) + 2 + len(text) <= width:
            lines.append(f"{label}: {text}")
            continue
        lines.append(f"{label}:" + ("" if text else " (empty)"))
        if text:
            # A file's final newline is the usual case, not a line of its own.
            lines.extend("  " + part for part in wrap_exact(text.removesuffix("\n") or text, width - 2))
    return lines


def format_plan(plan: Plan, catalogue: ToolCatalogue, errors: list[str] | None = None) -> str:
    """The plan as levels: one line per task with its risk, tool, title and dependencies."""
    lines = [f"Plan: {plan.goal}"]
    by_id = {}
    for t in plan.tasks:
        by_id.setdefault(t.id, t)  # plan.task() is a linear search: quadratic for big plans
    for n, level in enumerate(plan_levels(plan)):
        lines.append(f"  level {n}:")
        for tid in level:
            t = by_id[tid]
            spec = catalogue.get(t.tool)
            risk = spec.risk.value if spec else "?"
            deps = f"  <- {', '.join(t.deps)}" if t.deps else ""
            brief = _brief_args(t.args)
            lines.append(f"    {t.id:<8} [{risk:<5}] {t.tool:<10} {t.title}{deps}" + (f"  ({brief})" if brief else ""))
    for e in errors or []:
        lines.append(f"  error: {e}")
    return "\n".join(lines)


class HeadlessPrinter:
    """Prints one line per task transition; with `show_output`, the tasks' output too."""

    def __init__(self, out: TextIO | None = None, *, show_output: bool = False, t0: float | None = None,
                 show_added: bool = False):
        self.out = out or sys.stdout
        self.show_output = show_output
        self.show_added = show_added  # print tasks as they stream in from the planner
        self.t0 = t0 if t0 is not None else time.perf_counter()
        self.titles: dict[str, str] = {}
        self._partial: dict[str, str] = {}

    def _line(self, text: str) -> None:
        stamp = time.perf_counter() - self.t0
        try:
            self.out.write(f"[{stamp:6.1f}s] {text}\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass

    def __call__(self, event: ev.PlanEvent) -> None:
        if isinstance(event, ev.TaskAdded):
            self.titles[event.task.get("id", "?")] = event.task.get("title", "")
            if self.show_added:
                deps = event.task.get("deps") or []
                self._line(f"planned {event.task.get('id', '?')}  {event.task.get('tool', '?')}: "
                           f"{event.task.get('title', '')}" + (f"  <- {', '.join(deps)}" if deps else ""))
        elif isinstance(event, ev.TaskStarted):
            self._line(f"start   {event.task_id}  {self.titles.get(event.task_id, '')}")
        elif isinstance(event, ev.TaskOutput):
            if self.show_output:
                self._output(event.task_id, event.text)
        elif isinstance(event, ev.TaskFinished):
            self._flush(event.task_id)
            commit = f"  commit {event.commit[:10]}" if event.commit else ""
            self._line(f"ok      {event.task_id}  {event.seconds:.2f}s{commit}")
        elif isinstance(event, ev.TaskFailed):
            self._flush(event.task_id)
            error = event.error if len(event.error) < 300 else event.error[:299] + "…"
            self._line(f"FAILED  {event.task_id}  {event.seconds:.2f}s  {error}")
        elif isinstance(event, ev.TaskSkipped):
            self._line(f"skipped {event.task_id}  ({event.reason})")
        elif isinstance(event, ev.TaskCancelled):
            self._flush(event.task_id)
            self._line(f"cancel  {event.task_id}  {event.seconds:.2f}s")

    def _output(self, task_id: str, text: str) -> None:
        buf = self._partial.get(task_id, "") + text
        *lines, rest = buf.split("\n")
        self._partial[task_id] = rest
        for line in lines:
            self._line(f"  {task_id} | {line}")

    def _flush(self, task_id: str) -> None:
        rest = self._partial.pop(task_id, "")
        if rest and self.show_output:
            self._line(f"  {task_id} | {rest}")


def format_summary(nodes, wall_s: float) -> str:
    """Per task: status and time; then total wall time against the sum of task times."""
    rows = [("task", "status", "time", "title")]
    total = 0.0
    for n in nodes:
        secs = n.seconds if n.started is not None else 0.0
        total += secs
        rows.append((n.task.id, n.status.value, f"{secs:.2f}s" if n.started is not None else "-", n.task.title))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["Summary:"]
    for r in rows:
        lines.append(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")
    speedup = f" ({total / wall_s:.1f}x from parallelism)" if wall_s > 0 and total / wall_s >= 1.1 else ""
    lines.append(f"  wall time {wall_s:.2f}s, sum of task times {total:.2f}s{speedup}")
    return "\n".join(lines)
