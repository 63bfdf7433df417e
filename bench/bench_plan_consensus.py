"""Sampled plans against the greedy plan, same run: which pick, how good, how slow (issue #15).

    python bench/bench_plan_consensus.py --data runs/mix-v2 --samples 6 --out bench/results/consensus
    python bench/bench_plan_consensus.py --data runs/mix-v2 --results bench/results/consensus   # re-read

Runs `agx eval plans DATA/SET.jsonl --samples N` (a subprocess, the command a user runs; the
shipped adapter unless --adapter) on each held-out set of a delta_mix folder. Each record's
first plan is the greedy one (what `agx plan` gives), so one run holds the baseline and the N-1
draws. Prints per set: valid / node F1 / edge F1 of the greedy plans and of the consensus pick
(agx/training/consensus.py); single- and multi-tool node F1 (metrics.plan_shapes); how often a
draw replaced the greedy plan and how that went; on coding sets the files the edit is given
(metrics.write_losses); the best of the N plans by the gold and of the first k (the upper bound
of any way to pick, which reads the answer); a second pick, by the BM25 relevance of a plan's
tools to the request; and seconds per plan (the greedy draw alone vs all N) with their ratio.
With --results it re-reads the per-record files of an earlier run instead of planning.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from agx.planning.retrieval import ToolIndex
from agx.planning.validate import validate_plan
from agx.training.eval_plans import record_catalogue
from agx.training.metrics import parse_plan_output, plan_graph, plan_shapes, plan_writes, set_f1, write_losses
from agx.training.records import read_jsonl

SETS = ("taskbench-multimedia-validation", "delta-validation", "taskbench-multimedia-renamed")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _row(results: list[dict], prefix: str) -> dict[str, float]:
    """parse / valid / node / edge figures of one decoding over per-record results."""
    valid = [r[f"{prefix}valid"] for r in results]
    edges = [r[f"{prefix}edge_f1"] for r in results if r[f"{prefix}edge_f1"] is not None]
    return {"valid": 100 * _mean(valid), "node_f1": 100 * _mean([r[f"{prefix}node_f1"] for r in results]),
            "edge_f1": 100 * _mean(edges)}


def relevance_pick(data: Path, name: str):
    """A second way to pick, for comparison: the valid plan whose distinct tools score highest on
    average in the planner's BM25 retriever for the request (scores scaled by the top one)."""
    records = {rec["id"]: rec for rec in read_jsonl(data / f"{name}.jsonl")}
    catalogues: dict = {}

    def pick(results: list[dict], graphs: list[list]) -> tuple[float, float]:
        nodes, edges = [], []
        for r, gs in zip(results, graphs):
            catalogue = record_catalogue(records[r["id"]], data, catalogues)
            scores = ToolIndex(catalogue).scores(r["request"])
            top = max(scores, default=0.0) or 1.0
            rel = {n: s / top for n, s in zip(catalogue.names(), scores)}
            outputs = [r["greedy_output"], *r["sample_outputs"]]
            valid = [i for i, o in enumerate(outputs) if _valid(parse_plan_output(o), catalogue)] or [0]
            i = max(valid, key=lambda i: _mean([rel.get(t, 0.0) for t in set(gs[i][0])]))
            nodes.append(set_f1(gs[i][0], r["gold_nodes"]))
            if r["gold_edges"]:
                edges.append(set_f1(map(tuple, gs[i][1]), map(tuple, r["gold_edges"])))
        return 100 * _mean(nodes), 100 * _mean(edges)
    return pick


def _valid(plan: dict | None, catalogue) -> bool:
    return plan is not None and validate_plan(plan, catalogue).ok


def report(name: str, results: list[dict], relevance=None) -> None:
    if not results or "samples" not in results[0]:
        print(f"{name}: no consensus results (run with --samples 2 or more)")
        return
    greedy, consensus = _row(results, "greedy_"), _row(results, "")
    replaced = [r for r in results if r["chosen_sample"]]
    better = sum(1 for r in replaced if r["node_f1"] > r["greedy_node_f1"])
    worse = sum(1 for r in replaced if r["node_f1"] < r["greedy_node_f1"])
    timed = [r for r in results if "greedy_seconds" in r]  # results written before 2026-12-02 lack it
    greedy_s = _mean([r["greedy_seconds"] for r in timed])
    total_s = _mean([r["seconds"] for r in timed])
    greedy_view = [{**r, "pred_nodes": plan_graph(parse_plan_output(r["greedy_output"]))[0]} for r in results]
    print(f"{name} ({len(results)} records, {results[0]['samples']} plans each)")
    print(f"  {'decoding':<12} {'valid%':>7} {'nodeF1':>7} {'edgeF1':>7}")
    for label, row in (("greedy", greedy), ("consensus", consensus)):
        print(f"  {label:<12} {row['valid']:>7.1f} {row['node_f1']:>7.2f} {row['edge_f1']:>7.2f}")
    ratio = consensus["node_f1"] / greedy["node_f1"] if greedy["node_f1"] else float("nan")
    print(f"  node F1 ratio consensus/greedy {ratio:.3f}; a sample kept for {len(replaced)} records "
          f"(node F1 better {better}, worse {worse}, same {len(replaced) - better - worse})")
    for label, view in (("greedy", [{**r, "node_f1": r["greedy_node_f1"]} for r in greedy_view]), ("consensus", results)):
        shapes = plan_shapes(view)
        print(f"  {label:<10} single-tool node F1 {shapes['single_tool_node_f1']:6.2f}, multi-tool "
              f"{shapes['multi_tool_node_f1']:6.2f}, multi-tool planned as one task "
              f"{shapes['multi_tool_planned_as_one_task']} of {shapes['multi_tool']}")
    if any(r.get("gold_writes") for r in results):  # coding requests: the files the edit is given
        for label, view in (("greedy", [{**r, "pred_writes": plan_writes(parse_plan_output(r["greedy_output"]))}
                                        for r in results]), ("consensus", results)):
            w = write_losses(view)
            print(f"  {label:<10} files exact {w['exact']} of {w['requests_that_write']}, a needed file missing "
                  f"{w['missing_a_file']}, an extra file {w['extra_file']}")
    if any(r.get("sample_outputs") for r in results):
        # The best of the N plans by the gold: what no way of picking can beat (an upper bound,
        # not a decoding agx can run: it reads the answer).
        graphs = [[plan_graph(parse_plan_output(o)) for o in [r["greedy_output"], *r["sample_outputs"]]] for r in results]
        best_node = [max(set_f1(g[0], r["gold_nodes"]) for g in gs) for r, gs in zip(results, graphs)]
        best_edge = [max(set_f1(map(tuple, g[1]), map(tuple, r["gold_edges"])) for g in gs)
                     for r, gs in zip(results, graphs) if r["gold_edges"]]
        print(f"  best of the {results[0]['samples']} plans by the gold (upper bound of any pick): node F1 "
              f"{100 * _mean(best_node):.2f}, edge F1 {100 * _mean(best_edge):.2f}")
        by_k = [100 * _mean([max(set_f1(g[0], r["gold_nodes"]) for g in gs[:k]) for r, gs in zip(results, graphs)])
                for k in range(1, len(graphs[0]) + 1)]
        print("  best of the first k plans by the gold, node F1 for k = 1..N: " + ", ".join(f"{v:.2f}" for v in by_k))
        if relevance is not None:
            node, edge = relevance(results, graphs)
            print(f"  picked by relevance (valid plan whose tools BM25 ranks highest for the request, on average): "
                  f"node F1 {node:.2f}, edge F1 {edge:.2f}")
    if timed:
        print(f"  seconds per plan: greedy {greedy_s:.2f}, all draws {total_s:.2f} ({total_s / greedy_s:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a delta_mix folder (python -m agx.training.delta_mix)")
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--adapter", help="passed to agx eval plans (default: the role's, the shipped one)")
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--limit", type=int, help="records per set")
    ap.add_argument("--out", type=Path, default=Path("bench/results/consensus"))
    ap.add_argument("--results", type=Path, help="re-read per-record results from this folder; plan nothing")
    args = ap.parse_args(argv)

    folder = args.results or args.out
    folder.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        out = folder / f"{name}.jsonl"
        if args.results is None:
            cmd = [sys.executable, "-m", "agx", "--set", "roles.delta.n_threads=2", "eval", "plans",
                   str(args.data / f"{name}.jsonl"), "--samples", str(args.samples), "--out", str(out), "--quiet"]
            cmd += ["--adapter", args.adapter] if args.adapter else []
            cmd += ["--limit", str(args.limit)] if args.limit else []
            subprocess.run(cmd, check=True, env=os.environ.copy())
        if not out.exists():
            print(f"{name}: no results at {out}")
            continue
        report(name, list(read_jsonl(out)), relevance_pick(args.data, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
