"""Plan validation: structure, tools, arguments, placeholders and the dependency graph.

`validate_plan` never raises on a bad plan: it returns every problem it can find as one
message per problem, each naming the task it is about, because the messages go back to Delta
verbatim in repair rounds (and to the user when repairs run out).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError

from agx.planning.plan import TASK_ID_PATTERN, Plan, Task, placeholders_in
from agx.planning.tools import ToolCatalogue

_ID_RE = re.compile(TASK_ID_PATTERN)
_MAX_CYCLES_REPORTED = 3
_MAX_TOOL_NAMES_LISTED = 12


@dataclass
class ValidationReport:
    """What validation found. `plan` is None only when the input has no usable plan shape."""

    errors: list[str] = field(default_factory=list)
    plan: Plan | None = None
    critical_path: int = 0  # tasks on the longest dependency chain
    width: int = 0  # most tasks in one level (that could run at once)
    levels: list[list[str]] = field(default_factory=list)  # topological generations of task ids

    @property
    def ok(self) -> bool:
        return not self.errors and self.plan is not None


def _pydantic_messages(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        out.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return out


def _coerce(data: Any, errors: list[str]) -> tuple[Plan | None, list[Task]]:
    """Turn a dict into a Plan, keeping every well-formed task even if others are broken."""
    if isinstance(data, Plan):
        return data, list(data.tasks)
    if not isinstance(data, dict):
        errors.append(f"the plan must be a JSON object with 'goal' and 'tasks', got {type(data).__name__}")
        return None, []
    extra = sorted(set(data) - {"goal", "tasks"})
    if extra:
        errors.append(f"the plan has unknown fields: {', '.join(extra)} (only 'goal' and 'tasks')")
    goal = data.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        errors.append("the plan needs a non-empty 'goal' string")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list):
        errors.append("the plan needs a 'tasks' list")
        return None, []
    tasks: list[Task] = []
    for i, raw in enumerate(raw_tasks):
        label = f"task #{i + 1}"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            label = f"task {raw['id']!r}"
        try:
            tasks.append(Task.model_validate(raw))
        except ValidationError as exc:
            for msg in _pydantic_messages(exc):
                errors.append(f"{label}: {msg}")
    structurally_ok = isinstance(goal, str) and len(tasks) == len(raw_tasks) and not extra
    plan = Plan(goal=goal if isinstance(goal, str) else "", tasks=tasks) if structurally_ok else None
    return plan, tasks


def _format_path(path) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "args" + "".join(parts)


def _check_args(task: Task, catalogue: ToolCatalogue, errors: list[str]) -> None:
    spec = catalogue.get(task.tool)
    if spec is None:
        names = catalogue.names()
        listed = ", ".join(names[:_MAX_TOOL_NAMES_LISTED]) + (", ..." if len(names) > _MAX_TOOL_NAMES_LISTED else "")
        errors.append(f"task {task.id!r}: unknown tool {task.tool!r} (known: {listed})")
        return
    try:
        validator = Draft202012Validator(spec.args_schema)
        found = sorted(validator.iter_errors(task.args), key=lambda e: list(map(str, e.absolute_path)))
    except SchemaError as exc:  # the catalogue's fault, not the plan's; still reported, not raised
        errors.append(f"task {task.id!r}: tool {task.tool!r} has an invalid argument schema ({exc.message})")
        return
    for err in found:
        errors.append(f"task {task.id!r}: {_format_path(err.absolute_path)}: {err.message}")


def validate_plan(plan: Plan | dict[str, Any], catalogue: ToolCatalogue) -> ValidationReport:
    """Check a plan (a Plan or its JSON dict) against `catalogue`; collect every error."""
    errors: list[str] = []
    parsed, tasks = _coerce(plan, errors)
    if parsed is not None and not parsed.tasks:
        errors.append("the plan has no tasks")

    # Ids: well-formed and unique.
    first_index: dict[str, int] = {}
    for i, task in enumerate(tasks):
        if not _ID_RE.match(task.id):
            errors.append(
                f"task {task.id!r}: invalid id (start with a letter; letters, digits, '_' or '-'; at most 32 characters)"
            )
        if task.id in first_index:
            errors.append(f"task {task.id!r}: duplicate id (tasks #{first_index[task.id] + 1} and #{i + 1})")
        else:
            first_index[task.id] = i

    # Dependencies, tools, arguments, placeholders.
    graph = nx.DiGraph()
    graph.add_nodes_from(first_index)
    for task in tasks:
        seen: set[str] = set()
        for dep in task.deps:
            if dep in seen:
                errors.append(f"task {task.id!r}: lists dependency {dep!r} twice")
                continue
            seen.add(dep)
            if dep == task.id:
                errors.append(f"task {task.id!r}: depends on itself")
            elif dep not in first_index:
                errors.append(f"task {task.id!r}: depends on unknown task {dep!r}")
            else:
                graph.add_edge(dep, task.id)
        _check_args(task, catalogue, errors)
        for ref in sorted(placeholders_in(task.args)):
            if ref in seen:
                continue
            if ref not in first_index:
                errors.append(f"task {task.id!r}: argument uses ${{{ref}}} but there is no task {ref!r}")
            else:
                errors.append(f"task {task.id!r}: argument uses ${{{ref}}} but {ref!r} is not in its deps")

    report = ValidationReport(errors=errors, plan=parsed)
    if nx.is_directed_acyclic_graph(graph):
        report.levels = [sorted(level, key=first_index.__getitem__) for level in nx.topological_generations(graph)]
        report.width = max((len(level) for level in report.levels), default=0)
        report.critical_path = nx.dag_longest_path_length(graph) + 1 if graph.number_of_nodes() else 0
    else:
        for cycle in itertools.islice(nx.simple_cycles(graph), _MAX_CYCLES_REPORTED):
            ordered = _rotate_to_first(cycle, first_index)
            chain = " -> ".join(ordered + [ordered[0]])
            errors.append(f"task {ordered[0]!r}: dependency cycle {chain} (each task depends on the next)")
    return report


def _rotate_to_first(cycle: list[str], order: dict[str, int]) -> list[str]:
    """Start a reported cycle at its earliest-listed task so messages are stable.

    networkx lists a cycle along edges dep -> dependent; reversed, it reads "t1 depends on t2
    depends on ...", which is how a user reads the plan."""
    cycle = list(reversed(cycle))
    start = min(range(len(cycle)), key=lambda i: order.get(cycle[i], 0))
    return cycle[start:] + cycle[:start]
