"""Delta prompt variants on TaskBench's held-out split: which prompt suits a small planner?

Same model, same decoding (greedy, no repetition penalty, as `agx eval plans`), same kind of
constraint (the planner's in-process grammar, `plan_gbnf`, over the prompt's tools); only the
prompt changes:

    full             agx's planner prompt (rules, typed tool lines with risk tags, an example
                     plan over the catalogue's own first two tools)
    compact          one instruction line + one `name(args): description` line per tool
    compact_example  compact + one short generic example over tools not in the catalogue
    compact_retrieved compact over the 20 tools retrieval keeps (agx/planning/retrieval.py,
                     mcp.max_tools' default), grammar over those 20 as well
    full_retrieved   full over the same 20 retrieved tools

Scored with TaskBench's definitions (agx/training/metrics.py): unparseable output counts as an
empty plan; valid = passes agx's validator over the full catalogue.

    flock /tmp/agx-cpu.lock .venv/bin/python bench/bench_prompt_variants.py --limit 10
    flock /tmp/agx-cpu.lock .venv/bin/python bench/bench_prompt_variants.py --limit 40 \
        --variants full,compact,compact_example --out /tmp/variants.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TASKBENCH = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"
RETRIEVAL_LIMIT = 20
VARIANTS = ("full", "compact", "compact_example", "compact_retrieved", "full_retrieved")


def prompt_for(variant: str, request: str, catalogue, max_tasks: int):
    """(messages, catalogue the grammar is built over) for one variant."""
    from agx.planning.prompt import build_plan_messages
    from agx.planning.retrieval import select_tools

    if variant.endswith("_retrieved"):
        catalogue = select_tools(catalogue, request, RETRIEVAL_LIMIT)
        variant = variant.removesuffix("_retrieved")
    return build_plan_messages(request, catalogue, None, max_tasks=max_tasks, style=variant), catalogue


def run_variant(variant: str, records, engine, catalogue, args, samples: list) -> dict:
    from agx.planning.schema_grammar import plan_gbnf
    from agx.planning.validate import validate_plan
    from agx.runtime.engine import ChatRequest, EngineError
    from agx.training.metrics import gold_of, parse_plan_output, score_sample, summarize

    scores, prompt_tokens, completion_tokens, lengths = [], [], 0, 0
    retrieval_hits = retrieval_gold = 0
    t0 = time.perf_counter()
    for rec in records:
        messages, cat = prompt_for(variant, rec["request"], catalogue, args.max_tasks)
        gold_nodes, gold_edges = gold_of(rec)
        if cat is not catalogue:
            retrieval_gold += len(set(gold_nodes))
            retrieval_hits += len(set(gold_nodes) & set(cat.names()))
        request = ChatRequest(messages=messages, grammar=plan_gbnf(cat, max_tasks=args.max_tasks),
                              temperature=0.0, max_tokens=args.max_tokens, seed=0)
        t1 = time.perf_counter()
        try:
            stream = engine.chat(request)
            text = stream.read()
            stats = stream.stats
        except EngineError as exc:
            print(f"  engine error: {exc}", file=sys.stderr)
            text, stats = "", None
        plan = parse_plan_output(text)
        report = validate_plan(plan, catalogue) if plan is not None else None
        valid = bool(report and report.ok)
        score = score_sample(plan, valid, gold_nodes, gold_edges)
        scores.append(score)
        if stats is not None:
            prompt_tokens.append(stats.prompt_tokens)
            completion_tokens += stats.completion_tokens
            lengths += stats.finish_reason == "length"
        samples.append({"variant": variant, "id": rec["id"], "output": text, "valid": valid,
                        "errors": (report.errors[:3] if report else ["not a JSON plan"]), "node_f1": score.node_f1,
                        "edge_f1": score.edge_f1, "prompt_tokens": stats.prompt_tokens if stats else 0})
        if args.verbose:
            tools = [t.get("tool") for t in (plan or {}).get("tasks", []) if isinstance(t, dict)]
            print(f"  {variant:<17} {rec['id'][-8:]} nF1={score.node_f1:.2f} "
                  f"eF1={'-' if score.edge_f1 is None else f'{score.edge_f1:.2f}'} valid={int(valid)} "
                  f"{time.perf_counter() - t1:5.1f}s pred={tools} gold={gold_nodes}", flush=True)
    s = summarize(scores)
    row = s.as_dict()
    row.update({
        "variant": variant,
        "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens), 1) if prompt_tokens else 0,
        "completion_tokens": completion_tokens,
        "hit_max_tokens": lengths,
        "seconds": round(time.perf_counter() - t0, 1),
    })
    if retrieval_gold:
        row["retrieval_gold_recall_pct"] = round(100.0 * retrieval_hits / retrieval_gold, 1)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taskbench", default=str(DEFAULT_TASKBENCH), help="TaskBench domain folder")
    ap.add_argument("--limit", type=int, default=40, help="first N held-out records (ids ending 0-2)")
    ap.add_argument("--variants", default="full,compact,compact_example",
                    help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--max-tokens", type=int, default=768)
    ap.add_argument("--max-tasks", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="Delta's model (default: the configured one, bundled:smollm2)")
    ap.add_argument("--adapter", default=None, help="a LoRA adapter for Delta (name or .gguf)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per record")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {bad}; choose from {VARIANTS}")

    from agx.config import load_config
    from agx.runtime.pool import EnginePool
    from agx.training.taskbench import convert_taskbench

    conv = convert_taskbench(args.taskbench)
    held_out = [r for r in conv.records if r["split"] == "validation"][: args.limit]
    overrides = [f"roles.delta.n_threads={args.threads}", "roles.delta.n_ctx=4096",
                 "roles.delta.sampling.repeat_penalty=1.0"]
    if args.model:
        overrides.append(f"roles.delta.model={args.model}")
    if args.adapter:
        overrides.append(f"roles.delta.adapter={args.adapter}")
    config = load_config(ROOT, use_user_file=False, overrides=overrides).config
    pool = EnginePool(config, ROOT)
    engine = pool.engine("delta")
    rows: list[dict] = []
    samples: list[dict] = []
    try:
        print(f"{len(held_out)} held-out TaskBench {Path(args.taskbench).name} records, "
              f"{len(conv.catalogue)} tools, model {config.role('delta').model}", flush=True)
        for variant in variants:
            row = run_variant(variant, held_out, engine, conv.catalogue, args, samples)
            rows.append(row)
            print(f"{variant}: {json.dumps(row)}", flush=True)
    finally:
        pool.close()

    head = (f"{'variant':<18} {'n':>3} {'parse%':>6} {'valid%':>6} {'nodeF1':>6} {'edgeF1':>6} "
            f"{'(edge n)':>8} {'prompt tok':>10} {'out tok':>7} {'sec':>6}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['variant']:<18} {r['samples']:>3} {r['parseable_pct']:>6.1f} {r['valid_pct']:>6.1f} "
              f"{r['node_f1']:>6.1f} {r['edge_f1']:>6.1f} {r['edge_samples']:>8} {r['prompt_tokens_mean']:>10.0f} "
              f"{r['completion_tokens']:>7} {r['seconds']:>6.1f}"
              + (f"  retrieval recall {r['retrieval_gold_recall_pct']}%" if "retrieval_gold_recall_pct" in r else ""))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows, "samples": samples}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
