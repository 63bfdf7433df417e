"""Plan-quality metrics with TaskBench's definitions.

- node F1: per sample, F1 between the *set* of tool names predicted and the gold set;
  averaged over all samples.
- edge F1: per sample, F1 between the sets of (source tool, target tool) pairs; averaged over
  the samples whose gold graph has at least one edge (a single-tool request has no edges to
  score; TaskBench reports link F1 for multi-tool graphs).
- An unparseable output is an empty prediction (F1 0), never skipped — TaskBench's published
  tables leave such outputs out, so they flatter weak models; these figures do not.

Also reported: parseable rate (the output is a JSON object with a `tasks` list) and valid-DAG
rate (it passes agx's validator: known tools, fitting arguments, declared deps, no cycles).
Micro-averaged F1 (pooled counts over samples) is given alongside.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx


_LENIENT = json.JSONDecoder(strict=False)


def set_f1(pred: Iterable, gold: Iterable) -> float:
    """F1 of two sets: 1.0 when both are empty, 0.0 when exactly one is."""
    p, g = set(pred), set(gold)
    if not p and not g:
        return 1.0
    hit = len(p & g)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(p), hit / len(g)
    return 2 * precision * recall / (precision + recall)


def parse_plan_output(text: str) -> dict[str, Any] | None:
    """The model's output as a plan-shaped dict, or None if it is not one.

    Tolerates text around the JSON object (an unconstrained model may add prose or a code
    fence) by decoding from the first '{', and raw control characters inside strings (a newline
    in an instruction), as agx's planner does (agx/planning/stream_parser.py): llama.cpp's JSON
    grammar allows them, and a plan the planner accepts must not score as unparseable.
    (The strict decoder cost the shipped adapter 2 of 84 coding plans.)"""
    if not isinstance(text, str):
        return None
    start = text.find("{")
    if start < 0:
        return None
    try:
        data, _ = _LENIENT.raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        return None
    return data


def plan_graph(plan: dict[str, Any] | None) -> tuple[list[str], list[tuple[str, str]]]:
    """Tool names and (dep tool, task tool) pairs of a plan dict; lenient about broken tasks."""
    if not plan:
        return [], []
    tasks = [t for t in plan.get("tasks") or [] if isinstance(t, dict)]
    tool_of = {t.get("id"): t.get("tool") for t in tasks if isinstance(t.get("id"), str) and isinstance(t.get("tool"), str)}
    nodes = [t["tool"] for t in tasks if isinstance(t.get("tool"), str)]
    edges: list[tuple[str, str]] = []
    for t in tasks:
        target = t.get("tool")
        deps = t.get("deps") if isinstance(t.get("deps"), list) else []
        for dep in deps:
            source = tool_of.get(dep) if isinstance(dep, str) else None
            if source is not None and isinstance(target, str):
                edges.append((source, target))
    return nodes, edges


def plan_writes(plan: dict[str, Any] | None) -> list[str]:
    """The files a plan's tasks declare they write (the `code` task's paths, `edit_file`'s path...,
    as agx.execution.builtin_tools declares them), sorted, each once; none for a non-plan."""
    # Imported here: the tool declarations pull in the runners (~150 ms), which the scorers do not need.
    from agx.execution.builtin_tools import written_paths

    tasks = [t for t in (plan.get("tasks") or [] if isinstance(plan, dict) else []) if isinstance(t, dict)]
    return sorted({p for t in tasks if isinstance(t.get("tool"), str) and isinstance(t.get("args"), dict)
                   for p in written_paths(t["tool"], t["args"])})


def gold_of(record: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """A record's gold graph: TaskBench's own (`gold`) when present, else its plan's."""
    gold = record.get("gold")
    if isinstance(gold, dict):
        return list(gold.get("nodes") or []), [tuple(e) for e in gold.get("links") or []]
    return plan_graph(record.get("plan"))


@dataclass
class SampleScore:
    parseable: bool
    valid: bool
    node_f1: float
    edge_f1: float | None  # None: the gold graph has no edges
    node_counts: tuple[int, int, int] = (0, 0, 0)  # hits, predicted, gold (set sizes)
    edge_counts: tuple[int, int, int] = (0, 0, 0)


def score_sample(plan: dict[str, Any] | None, valid: bool, gold_nodes: list[str], gold_edges: list[tuple[str, str]]) -> SampleScore:
    nodes, edges = plan_graph(plan)
    pn, gn = set(nodes), set(gold_nodes)
    pe, ge = set(edges), set(map(tuple, gold_edges))
    return SampleScore(
        parseable=plan is not None,
        valid=valid,
        node_f1=set_f1(pn, gn),
        edge_f1=set_f1(pe, ge) if ge else None,
        node_counts=(len(pn & gn), len(pn), len(gn)),
        edge_counts=(len(pe & ge), len(pe), len(ge)) if ge else (0, 0, 0),
    )


def _micro(counts: list[tuple[int, int, int]]) -> float:
    hit = sum(c[0] for c in counts)
    pred = sum(c[1] for c in counts)
    gold = sum(c[2] for c in counts)
    if hit == 0:
        return 0.0
    p, r = hit / pred, hit / gold
    return 2 * p * r / (p + r)


@dataclass
class Summary:
    """Aggregate figures over samples; rates and F1 as percentages (0-100)."""

    samples: int = 0
    parseable_pct: float = 0.0
    valid_pct: float = 0.0
    node_f1: float = 0.0
    edge_f1: float = 0.0
    edge_samples: int = 0
    node_f1_micro: float = 0.0
    edge_f1_micro: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def summarize(scores: list[SampleScore]) -> Summary:
    n = len(scores)
    if n == 0:
        return Summary()
    edge_scores = [s for s in scores if s.edge_f1 is not None]
    return Summary(
        samples=n,
        parseable_pct=100.0 * sum(s.parseable for s in scores) / n,
        valid_pct=100.0 * sum(s.valid for s in scores) / n,
        node_f1=100.0 * sum(s.node_f1 for s in scores) / n,
        edge_f1=100.0 * sum(s.edge_f1 for s in edge_scores) / len(edge_scores) if edge_scores else 0.0,
        edge_samples=len(edge_scores),
        node_f1_micro=100.0 * _micro([s.node_counts for s in scores]),
        edge_f1_micro=100.0 * _micro([s.edge_counts for s in edge_scores]),
    )


def plan_shapes(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a planner's node F1 goes, from `agx eval plans` per-record results: node F1 on
    single-tool and on multi-tool requests (more than one distinct gold tool), how many multi-tool
    requests got a plan of at most one task, and distinct tools per plan against the gold's on
    the multi-tool requests (node F1 counts distinct names)."""
    single = [r for r in results if len(set(r["gold_nodes"])) == 1]
    multi = [r for r in results if len(set(r["gold_nodes"])) > 1]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    return {
        "single_tool": len(single),
        "single_tool_node_f1": round(100 * mean([r["node_f1"] for r in single]), 2),
        "multi_tool": len(multi),
        "multi_tool_node_f1": round(100 * mean([r["node_f1"] for r in multi]), 2),
        "multi_tool_planned_as_one_task": sum(1 for r in multi if len(r["pred_nodes"]) <= 1),
        "multi_tool_tools_predicted": round(mean([len(set(r["pred_nodes"])) for r in multi]), 2),
        "multi_tool_tools_gold": round(mean([len(set(r["gold_nodes"])) for r in multi]), 2),
    }


def edge_losses(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a planner's edge F1 goes, from `agx eval plans` per-record results, over the
    requests whose gold graph has edges. Each distinct gold edge (source tool, target tool) is
    one of:
      hit        the plan has that edge
      reversed   the plan has it the other way round
      indirect   both tools are planned and the source reaches the target through other tasks
      unwired    both tools are planned, with no path from source to target
      tool_missing  the plan lacks the source tool, the target tool or both
    and each predicted edge that is not gold is `wrong_pair` when both its tools are gold tools
    (the right tools, wired wrongly) or `wrong_tool` otherwise. Which lever moves edge F1 follows:
    `tool_missing` is node accuracy, `unwired`/`indirect`/`reversed` are dependencies."""
    counts = {k: 0 for k in ("gold_edges", "hit", "reversed", "indirect", "unwired", "tool_missing",
                             "pred_edges", "wrong_pair", "wrong_tool")}
    plans_without_deps = samples = 0
    for r in results:
        gold = {tuple(e) for e in r.get("gold_edges") or []}
        if not gold:
            continue
        samples += 1
        pred = {tuple(e) for e in r.get("pred_edges") or []}
        tools = set(r.get("pred_nodes") or [])
        gold_tools = set(r.get("gold_nodes") or [])
        if len(r.get("pred_nodes") or []) > 1 and not pred:
            plans_without_deps += 1
        graph = nx.DiGraph(list(pred))
        graph.add_nodes_from(tools)
        for s, t in gold:
            counts["gold_edges"] += 1
            if (s, t) in pred:
                counts["hit"] += 1
            elif s not in tools or t not in tools:
                counts["tool_missing"] += 1
            elif (t, s) in pred:
                counts["reversed"] += 1
            elif nx.has_path(graph, s, t):
                counts["indirect"] += 1
            else:
                counts["unwired"] += 1
        for s, t in pred - gold:
            counts["wrong_pair" if s in gold_tools and t in gold_tools else "wrong_tool"] += 1
        counts["pred_edges"] += len(pred)
    return {"edge_samples": samples, **counts, "multi_task_plans_without_deps": plans_without_deps}


def write_losses(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether plans change the right files, from `agx eval plans` per-record results, over the
    requests whose gold plan writes a file (agx's coding requests; node and edge F1 see tools and
    deps, not which files a `code` task is given). `missing_a_file`: a file the gold plan writes
    is not among the plan's (the `code` tool edits only the paths it is given, so a test asked
    for is not written); `extra_file`: the plan also gives a file the gold does not write (the
    edit may leave it as it is)."""
    pairs = [(set(r["gold_writes"]), set(r.get("pred_writes") or [])) for r in results if r.get("gold_writes")]
    return {
        "requests_that_write": len(pairs),
        "exact": sum(1 for gold, pred in pairs if pred == gold),
        "missing_a_file": sum(1 for gold, pred in pairs if gold - pred),
        "extra_file": sum(1 for gold, pred in pairs if pred - gold),
    }
