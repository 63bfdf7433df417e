"""Evaluate a planner model on a plan dataset: generate, parse, validate, score.

Each record's prompt is its own `messages` minus the gold answer — byte for byte what the
model saw in training, and what `build_plan_messages` gives at inference — and the output is
constrained as `agx plan` constrains it (`decoding="planner"`: the planner's in-process grammar
over the record's catalogue, with at least one task per numbered goal step when the adapter was trained
on such goals; a remote engine gets the JSON schema), or by the plan's JSON schema alone
(`decoding="schema"`, how figures before 2026-12-02 were measured). Decoding is greedy
(temperature 0, no repetition penalty) so runs are repeatable; `samples` > 1 adds seeded draws at
a temperature and scores their consensus plan beside the greedy one (agx/training/consensus.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from agx.planning.planner import plan_grammar
from agx.planning.prompt import build_plan_messages
from agx.planning.schema_grammar import plan_json_schema
from agx.planning.tools import ToolCatalogue
from agx.planning.validate import validate_plan
from agx.runtime.engine import CancelToken, ChatRequest, Engine, EngineError
from agx.training.metrics import (Summary, gold_of, parse_plan_output, plan_graph, plan_writes, score_sample,
                                  summarize)
from agx.training.consensus import consensus_index
from agx.training.records import DatasetError, read_jsonl, resolve_catalogue

MAX_ERRORS_KEPT = 5


@dataclass
class EvalOptions:
    limit: int | None = None
    max_tokens: int = 768
    max_tasks: int = 10
    max_deps: int = 4
    seed: int = 0
    decoding: str = "planner"  # DECODINGS
    count_steps: bool | None = None  # planner decoding: None = as the adapter's manifest says
    typed_links: bool | None = None  # planner decoding over typed tools: None = as roles.delta.typed_links says
    # Sampled plans (agx/training/consensus.py; an analysis, `agx plan` stays greedy): the greedy
    # plan plus samples - 1 drawn at sample_temperature with seeds seed+1, seed+2, ...; the
    # consensus plan is scored, the greedy plan's scores and every draw are kept beside it.
    samples: int = 1
    sample_temperature: float = 0.7


DECODINGS = ("planner", "schema")


def load_plan_records(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` records of a plan dataset, checked to have a request and a gold graph."""
    path = Path(path)
    records = []
    for i, record in enumerate(read_jsonl(path), 1):
        if not isinstance(record.get("request"), str) or not (record.get("plan") or record.get("gold")):
            raise DatasetError(f"{path}: record {i} is not a plan record (needs 'request' and 'plan' or 'gold'); "
                               "build one with `agx data delta`")
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise DatasetError(f"{path}: no records")
    return records


def record_catalogue(record: dict[str, Any], dataset_dir: Path,
                     cache: dict[str, ToolCatalogue] | None = None) -> ToolCatalogue:
    """The tools a record's planner sees: its catalogue, narrowed to `prompt_tools` when the
    record names them (the tools retrieval put in its prompt: the planner's grammar allows only
    those, as agx plan narrows a large catalogue the same way, so the eval does too)."""
    catalogue = resolve_catalogue(record.get("catalogue"), dataset_dir, cache)
    shown = record.get("prompt_tools")
    if isinstance(shown, list) and shown and all(n in catalogue.tools for n in shown):
        return ToolCatalogue.of(catalogue.get(n) for n in shown)
    return catalogue


def prompt_messages(record: dict[str, Any], catalogue: ToolCatalogue) -> list[dict[str, str]]:
    """The training prompt (messages without the gold answer), or a fresh one if absent."""
    messages = record.get("messages")
    if isinstance(messages, list) and messages and messages[-1].get("role") == "assistant":
        return [dict(m) for m in messages[:-1]]
    return build_plan_messages(record["request"], catalogue)


def evaluate_record(
    record: dict[str, Any], engine: Engine, catalogue: ToolCatalogue, options: EvalOptions,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Plan one record's request and score it; an engine error scores as an empty prediction."""
    if options.decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {options.decoding!r} (one of {', '.join(DECODINGS)})")
    grammar = None
    if options.decoding == "planner":
        grammar = plan_grammar(engine, catalogue, max_tasks=options.max_tasks, count_steps=options.count_steps,
                               typed_links=options.typed_links)
    constraint = {"grammar": grammar} if grammar is not None else {
        "json_schema": plan_json_schema(catalogue, max_tasks=options.max_tasks, max_deps=options.max_deps)}
    request = ChatRequest(
        messages=prompt_messages(record, catalogue), temperature=0.0,
        max_tokens=options.max_tokens, seed=options.seed, purpose="plan", **constraint,
    )
    t0 = time.perf_counter()
    error = None
    text, finish, completion_tokens = "", "error", 0
    try:
        stream = engine.chat(request, cancel)
        text = stream.read()
        finish, completion_tokens = stream.stats.finish_reason, stream.stats.completion_tokens
    except EngineError as exc:
        error = str(exc)
    plan = parse_plan_output(text)
    report = validate_plan(plan, catalogue) if plan is not None else None
    gold_nodes, gold_edges = gold_of(record)
    consensus: dict[str, Any] = {}
    if options.samples > 1 and error is None:
        greedy = score_sample(plan, bool(report and report.ok), gold_nodes, gold_edges)
        consensus = {"greedy_seconds": round(time.perf_counter() - t0, 3), "greedy_output": text,
                     "greedy_node_f1": round(greedy.node_f1, 4),
                     "greedy_edge_f1": None if greedy.edge_f1 is None else round(greedy.edge_f1, 4),
                     "greedy_valid": greedy.valid, "_greedy_score": greedy}
        outputs, drawn_tokens = _draw_more(engine, request, catalogue, options, cancel, text, report)
        completion_tokens += drawn_tokens
        chosen = consensus_index([p for _, p in outputs]) or 0
        consensus.update(samples=len(outputs), chosen_sample=chosen, sample_outputs=[o for o, _ in outputs[1:]])
        text = outputs[chosen][0]
        plan = parse_plan_output(text)
        report = validate_plan(plan, catalogue) if plan is not None else None
    score = score_sample(plan, bool(report and report.ok), gold_nodes, gold_edges)
    nodes, edges = plan_graph(plan)
    return {
        "id": record.get("id"),
        "request": record["request"],
        "output": text,
        "finish_reason": finish,
        "completion_tokens": completion_tokens,
        "seconds": round(time.perf_counter() - t0, 3),
        "engine_error": error,
        **consensus,
        "parseable": score.parseable,
        "valid": score.valid,
        "errors": (report.errors[:MAX_ERRORS_KEPT] if report else ["output is not a JSON plan"]),
        "node_f1": round(score.node_f1, 4),
        "edge_f1": None if score.edge_f1 is None else round(score.edge_f1, 4),
        "pred_nodes": nodes,
        "gold_nodes": gold_nodes,
        "pred_edges": [list(e) for e in edges],
        "gold_edges": [list(e) for e in gold_edges],
        "pred_writes": plan_writes(plan),
        "gold_writes": plan_writes(record.get("plan")),
        "_score": score,
    }


def _draw_more(engine: Engine, request: ChatRequest, catalogue: ToolCatalogue, options: EvalOptions,
               cancel: CancelToken | None, greedy_text: str, greedy_report) -> tuple[list, int]:
    """[(output, its plan if valid else None)] for the greedy output and `samples - 1` draws,
    and the draws' completion tokens. An engine error ends the drawing."""
    drawn = [(greedy_text, greedy_report.plan if greedy_report and greedy_report.ok else None)]
    tokens = 0
    for k in range(1, options.samples):
        try:
            stream = engine.chat(replace(request, temperature=options.sample_temperature, seed=options.seed + k), cancel)
            text = stream.read()
        except EngineError:
            break
        tokens += stream.stats.completion_tokens
        plan = parse_plan_output(text)
        report = validate_plan(plan, catalogue) if plan is not None else None
        drawn.append((text, report.plan if report and report.ok else None))
    return drawn, tokens


def evaluate_records(
    records: list[dict[str, Any]], engine: Engine, dataset_dir: Path, options: EvalOptions | None = None,
    on_result: Callable[[int, dict[str, Any]], None] | None = None, cancel: CancelToken | None = None,
) -> tuple[Summary, list[dict[str, Any]]]:
    """Score every record; `on_result(index, result)` is called as each one finishes."""
    options = options or EvalOptions()
    cache: dict[str, ToolCatalogue] = {}
    results, scores, greedy_scores = [], [], []
    t0 = time.perf_counter()
    tokens = 0
    for i, record in enumerate(records):
        if cancel is not None and cancel.cancelled:
            break
        catalogue = record_catalogue(record, dataset_dir, cache)
        result = evaluate_record(record, engine, catalogue, options, cancel)
        scores.append(result.pop("_score"))
        greedy_scores.append(result.pop("_greedy_score", None))
        tokens += result["completion_tokens"]
        results.append(result)
        if on_result is not None:
            on_result(i, result)
    summary = summarize(scores)
    wall = time.perf_counter() - t0
    summary.extra = {"seconds": round(wall, 1), "completion_tokens": tokens,
                     "engine_errors": sum(1 for r in results if r["engine_error"])}
    if options.samples > 1 and greedy_scores and all(g is not None for g in greedy_scores):
        # The greedy plans of the same run: what consensus decoding is measured against.
        summary.extra["greedy"] = summarize(greedy_scores)
        summary.extra["samples"] = options.samples
        summary.extra["chose_a_sample"] = sum(1 for r in results if r.get("chosen_sample"))
    return summary, results


def iter_table_rows(rows: list[tuple[str, Summary]]) -> Iterator[str]:
    """A fixed-width table: one row per (label, summary)."""
    head = f"{'model':<28} {'n':>4} {'parse%':>7} {'validDAG%':>9} {'nodeF1':>7} {'edgeF1':>7} {'(edge n)':>8}"
    yield head
    yield "-" * len(head)
    for label, s in rows:
        yield (f"{label[:28]:<28} {s.samples:>4} {s.parseable_pct:>7.1f} {s.valid_pct:>9.1f} "
               f"{s.node_f1:>7.2f} {s.edge_f1:>7.2f} {s.edge_samples:>8}")
