"""Would retrieval pick a plan's tools better than the adapter does? (issue #15, an offline check)

    python bench/bench_step_retrieval.py --data runs/delta-c240k/data \
        --results bench/results/delta-adapter/adapter-taskbench-multimedia-validation.jsonl

The adapter's TaskBench plans are often right in their step titles and wrong in the tool after
them, and edge F1 is lost almost entirely to a missing tool (metrics.edge_losses). This rescores
the adapter's own outputs (per-record results of `agx eval plans`, no model run) with each task's
tool replaced by the BM25 top match of the task's title over the tools its prompt showed (the
planner's own retriever, agx.planning.retrieval.ToolIndex):

  model          the adapter's tools as written (the baseline, equal to the eval's figures)
  bm25           every tool replaced by its title's top match
  model_if_top3  the adapter's tool kept when it is among its title's top 3, else the top match

and, as the ceiling of the idea, how often the top match of the *gold* step titles is the gold
tool. Prints node and edge F1 per variant and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agx.planning.retrieval import ToolIndex
from agx.planning.tools import ToolCatalogue
from agx.training.eval_plans import record_catalogue
from agx.training.metrics import gold_of, parse_plan_output, score_sample, summarize
from agx.training.records import read_jsonl

VARIANTS = ("model", "bm25", "model_if_top3")


def _ranked(index: ToolIndex, text: str) -> list[str]:
    if max(index.scores(text), default=0.0) <= 0:
        return []  # no word of the title is in any tool's text: keep what the model wrote
    return index.ranked(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a delta_mix folder (held-out file + catalogue)")
    ap.add_argument("--results", type=Path, required=True, help="per-record results of agx eval plans on it")
    ap.add_argument("--set", default="taskbench-multimedia-validation")
    args = ap.parse_args(argv)

    records = {rec["id"]: rec for rec in read_jsonl(args.data / f"{args.set}.jsonl")}
    catalogues: dict[str, ToolCatalogue] = {}
    indexes: dict[tuple[str, ...], ToolIndex] = {}

    def index_for(rec: dict) -> ToolIndex:
        """The retriever over the tools the record's prompt showed (as the eval narrows them)."""
        shown = record_catalogue(rec, args.data, catalogues)
        key = tuple(shown.names())
        if key not in indexes:
            indexes[key] = ToolIndex(shown)
        return indexes[key]

    gold_hits = gold_steps = 0
    for rec in records.values():
        for task in rec["plan"]["tasks"]:
            ranked = _ranked(index_for(rec), task["title"])
            gold_steps += 1
            gold_hits += bool(ranked) and ranked[0] == task["tool"]

    outputs = list(read_jsonl(args.results))
    figures = {}
    for variant in VARIANTS:
        scores = []
        for out in outputs:
            rec = records[out["id"]]
            plan = parse_plan_output(out["output"])
            if plan and variant != "model":
                for task in plan["tasks"]:
                    if not isinstance(task, dict) or not isinstance(task.get("title"), str):
                        continue
                    ranked = _ranked(index_for(rec), task["title"])
                    if ranked and (variant == "bm25" or task.get("tool") not in ranked[:3]):
                        task["tool"] = ranked[0]
            scores.append(score_sample(plan, bool(out["valid"]), *gold_of(rec)))
        figures[variant] = summarize(scores)

    print(f"{args.set}: {len(outputs)} plans; gold step titles whose BM25 top match is the gold tool: "
          f"{gold_hits} of {gold_steps} ({100 * gold_hits / max(gold_steps, 1):.1f}%)")
    base = figures["model"]
    print(f"{'variant':<14} {'node F1':>8} {'edge F1':>8} {'node ratio':>11} {'edge ratio':>11}")
    for variant, s in figures.items():
        ratio = lambda a, b: f"{a / b:.2f}x" if b else "n/a"  # noqa: E731
        print(f"{variant:<14} {s.node_f1:>8.2f} {s.edge_f1:>8.2f} {ratio(s.node_f1, base.node_f1):>11} "
              f"{ratio(s.edge_f1, base.edge_f1):>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
