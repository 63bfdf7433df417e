"""`agx eval plans DATASET`: score a planner model (base or with an adapter) on a plan dataset."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from agx.cli.context import EXIT_INTERRUPTED, EXIT_USAGE, CliContext, CliError


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate models (plans: parseable / valid-DAG rate, node and edge F1)")
    esub = p.add_subparsers(dest="eval_command", metavar="KIND", required=True)
    e = esub.add_parser(
        "plans", help="plan every request of a dataset and score the plans",
        description="Plan each record's request with the role's model under Delta's grammar (greedy decoding) and "
        "score it TaskBench's way: node F1 over tool names, edge F1 over (source, target) tool pairs; unparseable "
        "outputs count as empty predictions. Writes per-sample results as JSON Lines and prints a table.",
    )
    e.add_argument("dataset", help="a plan dataset (.jsonl from `agx data delta`)")
    e.add_argument("--adapter", help="LoRA adapter for the role: a name under adapters/ or a .gguf path; 'none' for the bare base "
                   "(default: the role's adapter setting, 'auto' = the adapter shipped for its model)")
    e.add_argument("--role", choices=["echo", "delta"], default="delta", help="whose model plans (default: delta)")
    e.add_argument("--limit", type=int, help="score only the first N records")
    e.add_argument("--max-tokens", type=int, default=768, help="cap on each plan's length in tokens (default 768)")
    e.add_argument("--out", help="per-sample results file (default: .agx/eval/<dataset>-<time>.jsonl)")
    e.add_argument("--label", help="name of this run in the table (default: the model and adapter)")
    e.add_argument("--decoding", choices=["planner", "schema"], default="planner",
                   help="planner: constrained as `agx plan` constrains it (default); schema: the plan's JSON schema only "
                   "(how figures before 2026-12-02 were measured)")
    e.add_argument("--count-steps", choices=["auto", "on", "off"], default="auto",
                   help="planner decoding: at least one task per numbered goal step (auto: when the adapter's manifest says its "
                   "goals were numbered steps)")
    e.add_argument("--typed-links", choices=["auto", "on", "off"], default="auto",
                   help="planner decoding over tools that declare input/output types: a task wired to the one before "
                   "it uses a tool that takes that task's output (auto: roles.delta.typed_links)")
    e.add_argument("--samples", type=int, default=1,
                   help="an analysis (agx plan stays greedy): draw N plans per record, the greedy one and N-1 sampled, and "
                   "score the one the others agree with most beside the greedy one; every draw is kept in the results "
                   "(bench/bench_plan_consensus.py reads them) (default 1)")
    e.add_argument("--sample-temperature", type=float, default=0.7, help="temperature of the sampled plans (default 0.7)")
    e.add_argument("--quiet", action="store_true", help="no per-sample progress on stderr")
    e.set_defaults(func=run_plans)


def run_plans(ctx: CliContext) -> int:
    from agx.runtime.engine import CancelToken
    from agx.training.eval_plans import EvalOptions, evaluate_records, iter_table_rows, load_plan_records
    from agx.training.records import DatasetError, write_jsonl

    args = ctx.args
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1", EXIT_USAGE)
    if args.max_tokens < 16:
        raise CliError("--max-tokens must be at least 16", EXIT_USAGE)
    if not 1 <= args.samples <= 16:
        raise CliError("--samples must be between 1 and 16", EXIT_USAGE)
    if not 0 < args.sample_temperature <= 2:
        raise CliError("--sample-temperature must be above 0 and at most 2", EXIT_USAGE)
    dataset = Path(args.dataset)
    dataset = dataset if dataset.is_absolute() else ctx.cwd / dataset
    try:
        records = load_plan_records(dataset, args.limit)
    except DatasetError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    role = ctx.config.role(args.role)
    if args.adapter:
        role.adapter = None if args.adapter.lower() == "none" else args.adapter
    # Greedy and without repetition penalty: JSON repeats tokens by nature, and runs must repeat.
    role.sampling.temperature = 0.0
    role.sampling.repeat_penalty = 1.0
    engine = ctx.pool.engine(args.role)
    engine.wait_loaded()
    info = engine.info()
    # The scale the adapter runs at (role setting, else its manifest's): results differ by it.
    scale = getattr(engine, "adapter_scale", None) if info.adapter else None
    label = args.label or f"{Path(info.model).name}" + (f" + {info.adapter}" if info.adapter else "") + (
        f" @ {scale:g}" if scale not in (None, 1.0) else "")
    out = Path(args.out) if args.out else ctx.base_dir / ".agx" / "eval" / f"{dataset.stem}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    if not out.is_absolute():
        out = ctx.cwd / out

    def progress(i: int, result: dict) -> None:
        if not args.quiet:
            mark = "valid" if result["valid"] else ("parsed" if result["parseable"] else "unparseable")
            print(f"[{i + 1}/{len(records)}] {mark:<11} nodeF1 {result['node_f1']:.2f} {result['seconds']:.1f}s  {result['id']}",
                  file=sys.stderr)

    cancel = CancelToken()
    try:
        summary, results = evaluate_records(records, engine, dataset.parent, EvalOptions(
            max_tokens=args.max_tokens, decoding=args.decoding,
            count_steps={"auto": None, "on": True, "off": False}[args.count_steps],
            typed_links={"auto": None, "on": True, "off": False}[args.typed_links], samples=args.samples,
            sample_temperature=args.sample_temperature),
                                            on_result=progress, cancel=cancel)
    except DatasetError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except KeyboardInterrupt:
        cancel.cancel()
        print("agx: interrupted; no results written", file=sys.stderr)
        return EXIT_INTERRUPTED
    write_jsonl(out, results)
    summary_path = out.with_suffix(".summary.json")
    greedy = summary.extra.pop("greedy", None)
    record = {"dataset": str(dataset), "model": info.model, "adapter": info.adapter, "adapter_scale": scale,
              "label": label, **summary.as_dict()}
    rows = [(label, summary)]
    if greedy is not None:
        record["greedy"] = greedy.as_dict()
        rows = [(f"greedy: {label}", greedy), (f"consensus of {args.samples}: {label}", summary)]
    summary_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for line in iter_table_rows(rows):
        print(line)
    print(f"micro F1: node {summary.node_f1_micro:.2f}, edge {summary.edge_f1_micro:.2f}; "
          f"{summary.extra['seconds']}s, {summary.extra['completion_tokens']} tokens generated")
    print(f"per-sample results: {out}")
    return 0
