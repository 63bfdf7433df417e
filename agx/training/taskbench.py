"""TaskBench data (request -> tool graph) converted into agx plan records.

TaskBench (Shen et al., 2023) stores each sample as `instruction`, `task_nodes`
(`{"task": TOOL, "arguments": [...]}`) and `task_links` (`{"source": TOOL, "target": TOOL}`);
an argument `"<node-j>"` is the output of another node. Here a sample becomes an agx plan over
the domain's own tool list (`tool_desc.json` as the catalogue): one task per node, `deps` from
the links, and each `<node-j>` reference rewritten as the `${ID}` placeholder of the dependency
it names — so a model trained on it learns agx's plan format with a foreign catalogue.

The gold graph TaskBench scores against (node names, link name pairs) is kept verbatim in each
record's `gold`, so metrics follow TaskBench's definitions even where the conversion had to
repair a sample. Upstream quirks handled: `<node-j>` is 0-based in most samples and 1-based in
some (the link list decides), arguments that are not lists of strings, tools missing from
tool_desc.json (such samples stay in the held-out split, scored as is, and leave the train split).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from agx.planning.prompt import build_plan_messages
from agx.planning.schema_grammar import ARG_STRING_MAX_CHARS, canonical_plan_json
from agx.planning.tools import ToolCatalogue, load_catalogue_file
from agx.planning.validate import validate_plan
from agx.training.records import DatasetError, catalogue_to_json, read_jsonl

NODE_REF_RE = re.compile(r"<node-(\d+)(?:-output-\d+)?>")
_STEP_PREFIX_RE = re.compile(r"^\s*(?:step\s*\d+\s*[:.)-]\s*|\d+\s*[.)]\s+)", re.IGNORECASE)
# Shorter than the grammar allows: every target token costs CPU training time.
GOAL_MAX_CHARS = 80
STEPS_GOAL_MAX_CHARS = 160
TITLE_CHARS = 60
GOAL_STYLES = ("steps", "request")


def is_eval_id(sample_id: str) -> bool:
    """TaskBench's suggested held-out split: ids ending in 0, 1 or 2."""
    return str(sample_id)[-1:] in ("0", "1", "2")


def _shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") or text[:limit]


def _goal(instruction: str) -> str:
    first = re.split(r"(?<=[.?!])\s", " ".join(instruction.split()), maxsplit=1)[0]
    return _shorten(first, GOAL_MAX_CHARS)


def steps_goal(titles: list[str]) -> str:
    """The plan's steps, numbered, as its goal: "1) Stabilize the video; 2) Extract the audio".

    A small planner that first writes how many steps the request has, and what each does, then
    picks one tool per step, has a count to keep to. Measured on the 128 held-out requests: the
    adapter trained on request-copy goals planned one task for 48 of the 77 multi-tool ones,
    the one trained on step goals for 42 (node F1 43.8 -> 47.0); still far from enough."""
    n = len(titles)
    room = max(16, (STEPS_GOAL_MAX_CHARS - 5 * n) // n)
    return "; ".join(f"{i}) {_shorten(t, room)}" for i, t in enumerate(titles, 1))


def _titles(sample: dict[str, Any], tools: list[str]) -> list[str]:
    steps = sample.get("task_steps")
    if isinstance(steps, list) and len(steps) == len(tools) and all(isinstance(s, str) for s in steps):
        titles = [_shorten(_STEP_PREFIX_RE.sub("", s), TITLE_CHARS) for s in steps]
        if all(titles):
            return titles
    return list(tools)


def _link_edges(sample: dict[str, Any], tools: list[str]) -> list[tuple[int, int]]:
    """Node index pairs (source, target) for the sample's links, resolving repeated tool names
    to the nearest earlier occurrence of the source."""
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(tools):
        positions.setdefault(name, []).append(i)
    edges: list[tuple[int, int]] = []
    for link in sample.get("task_links") or []:
        if not isinstance(link, dict):
            continue
        sources, targets = positions.get(link.get("source"), []), positions.get(link.get("target"), [])
        pairs = [(s, t) for t in targets for s in sources if s != t]
        if not pairs:
            continue
        forward = [p for p in pairs if p[0] < p[1]]
        s, t = min(forward or pairs, key=lambda p: abs(p[1] - p[0]))
        if (s, t) not in edges:
            edges.append((s, t))
    return edges


def _resolve_ref(j: int, node: int, deps: list[int]) -> int | None:
    """Which node `<node-j>` inside node `node` means: 0-based if that is one of its deps,
    else 1-based, else the reference's most plausible earlier node."""
    for candidate in (j, j - 1):
        if candidate in deps and candidate != node:
            return candidate
    if len(deps) == 1:
        return deps[0]
    for candidate in (j, j - 1):
        if 0 <= candidate < node:
            return candidate
    return None


def _convert_arg(value: Any, node: int, deps: list[int], ids: list[str], tools: list[str]) -> str:
    if isinstance(value, dict) and isinstance(value.get("source"), str) and value["source"] in tools:
        src = tools.index(value["source"])
        if src != node:
            if src not in deps:
                deps.append(src)
            return "${" + ids[src] + "}"
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)

    def replace(match: re.Match) -> str:
        target = _resolve_ref(int(match.group(1)), node, deps)
        if target is None:
            return match.group(0)
        if target not in deps:
            deps.append(target)
        return "${" + ids[target] + "}"

    return NODE_REF_RE.sub(replace, value)[:ARG_STRING_MAX_CHARS]


def sample_to_plan(sample: dict[str, Any], goal_style: str = "steps") -> dict[str, Any]:
    """One TaskBench sample as an agx plan dict (ids t1..tN, deps acyclic). The goal is the
    numbered steps (`goal_style="steps"`) or the request's first sentence (`"request"`)."""
    if goal_style not in GOAL_STYLES:
        raise ValueError(f"goal_style must be one of {GOAL_STYLES}, not {goal_style!r}")
    nodes = [n for n in sample.get("task_nodes") or [] if isinstance(n, dict) and isinstance(n.get("task"), str)]
    if not nodes:
        raise DatasetError(f"sample {sample.get('id')}: no task nodes")
    tools = [n["task"] for n in nodes]
    ids = [f"t{i + 1}" for i in range(len(nodes))]
    deps: list[list[int]] = [[] for _ in nodes]
    for s, t in _link_edges(sample, tools):
        deps[t].append(s)
    args: list[list[str]] = []
    for i, node in enumerate(nodes):
        raw = node.get("arguments")
        values = raw if isinstance(raw, list) else ([] if raw is None else [raw])
        args.append([_convert_arg(v, i, deps[i], ids, tools) for v in values])
    # Keep the graph a DAG: drop any dependency that closes a cycle (upstream links sometimes do).
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(nodes)))
    # Forward edges (to a later node) first: upstream lists nodes in execution order.
    candidates = [(s, t) for t in range(len(nodes)) for s in dict.fromkeys(deps[t])]
    for s, t in sorted(candidates, key=lambda e: e[0] > e[1]):
        graph.add_edge(s, t)
        if not nx.is_directed_acyclic_graph(graph):
            graph.remove_edge(s, t)
    titles = _titles(sample, tools)
    tasks = []
    for i in range(len(nodes)):
        kept = [s for s in dict.fromkeys(deps[i]) if graph.has_edge(s, i)]
        dep_ids = [ids[s] for s in kept]
        inputs = [_drop_dangling(a, dep_ids) for a in args[i]]
        tasks.append({"id": ids[i], "title": titles[i], "tool": tools[i], "deps": dep_ids, "args": {"inputs": inputs}})
    goal = steps_goal(titles) if goal_style == "steps" else _goal(sample.get("instruction", ""))
    return {"goal": goal or "Plan the request", "tasks": tasks}


def _drop_dangling(text: str, dep_ids: list[str]) -> str:
    """A placeholder whose dependency had to be dropped goes back to TaskBench's own notation."""
    return re.sub(r"\$\{(t\d+)\}", lambda m: m.group(0) if m.group(1) in dep_ids else f"<node-{int(m.group(1)[1:]) - 1}>", text)


def gold_graph(sample: dict[str, Any]) -> dict[str, Any]:
    """The graph TaskBench scores against: tool names and (source, target) name pairs."""
    nodes = [n["task"] for n in sample.get("task_nodes") or [] if isinstance(n, dict) and isinstance(n.get("task"), str)]
    links = [
        [link["source"], link["target"]]
        for link in sample.get("task_links") or []
        if isinstance(link, dict) and isinstance(link.get("source"), str) and isinstance(link.get("target"), str)
    ]
    return {"nodes": nodes, "links": links}


@dataclass
class TaskBenchConversion:
    records: list[dict[str, Any]] = field(default_factory=list)
    catalogue: ToolCatalogue | None = None
    catalogue_file: str = ""
    dropped_invalid_train: int = 0
    invalid_eval_kept: int = 0
    problems: list[str] = field(default_factory=list)


def find_domain_files(folder: str | Path) -> tuple[Path, Path]:
    """data.jsonl (or data.json, upstream's name for JSON Lines) and tool_desc.json of a domain."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder (expected a TaskBench domain with data.jsonl and tool_desc.json)")
    data = next((folder / n for n in ("data.jsonl", "data.json") if (folder / n).is_file()), None)
    tools = folder / "tool_desc.json"
    if data is None or not tools.is_file():
        raise DatasetError(f"{folder}: a TaskBench domain folder needs data.jsonl and tool_desc.json")
    return data, tools


def convert_taskbench(folder: str | Path, domain: str | None = None, goal_style: str = "steps",
                      io_types: bool = False) -> TaskBenchConversion:
    """Every sample of a TaskBench domain folder as a plan record, with its split
    ('validation' for ids ending 0-2, else 'train'). Train records whose converted plan fails
    validation are dropped; held-out records are all kept (scoring needs the full split).
    `io_types`: each tool's description ends with its input and output types."""
    data_path, tools_path = find_domain_files(folder)
    domain = domain or Path(folder).name
    catalogue = load_catalogue_file(tools_path, io_types=io_types)
    conv = TaskBenchConversion(catalogue=catalogue, catalogue_file=f"catalogue-taskbench-{domain}.json")
    for sample in read_jsonl(data_path):
        sid = str(sample.get("id", ""))
        request = sample.get("instruction")
        if not sid or not isinstance(request, str) or not request.strip():
            conv.problems.append(f"sample {sid or '?'}: no id or instruction")
            continue
        try:
            plan = sample_to_plan(sample, goal_style)
        except DatasetError as exc:
            conv.problems.append(str(exc))
            continue
        split = "validation" if is_eval_id(sid) else "train"
        report = validate_plan(plan, catalogue)
        if not report.ok:
            if split == "train":
                conv.dropped_invalid_train += 1
                continue
            conv.invalid_eval_kept += 1
        messages = build_plan_messages(request, catalogue)
        messages.append({"role": "assistant", "content": canonical_plan_json(plan)})
        conv.records.append({
            "id": f"taskbench-{domain}-{sid}",
            "source": f"taskbench-{domain}",
            "split": split,
            "type": sample.get("type"),
            "request": request,
            "catalogue": conv.catalogue_file,
            "plan": plan,
            "gold": gold_graph(sample),
            "gold_valid": report.ok,
            "messages": messages,
        })
    return conv


def write_catalogue(conv: TaskBenchConversion, out_dir: str | Path) -> Path:
    path = Path(out_dir) / conv.catalogue_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalogue_to_json(conv.catalogue), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
