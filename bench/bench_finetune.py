#!/usr/bin/env python3
"""The fine-tuning loop's payoff, measured on CPU with the bundled SmolLM2-135M.

1. builds Delta's dataset (`agx data delta`: agx's generated requests + TaskBench multimedia),
2. trains a LoRA with scripts/train.py for a fixed time budget (default 10 min),
3. converts it to a GGUF adapter (agx adapters convert),
4. evaluates base vs base+adapter, same grammar and greedy decoding, on two held-out sets:
   agx's own generated validation split and TaskBench multimedia's held-out split (ids ending
   0-2), the first --limit records of each,
5. prints parseable %, valid-DAG %, node F1, edge F1 (TaskBench definitions, unparseable
   outputs counted as empty), the ratio adapter/base, training throughput, and the published
   TaskBench multimedia figures for scale (those leave unparseable outputs out and use the
   full 128-record split with 13B+ models — a reference point, not a like-for-like comparison).

    python bench/bench_finetune.py                       # ~10 min training + evaluation
    python bench/bench_finetune.py --budget-min 30 --limit 128 --out runs/bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKBENCH_DEFAULT = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"
PUBLISHED = [("codellama-13b (published)", 62.78, 24.61), ("gpt-4 (published)", 90.90, 69.27)]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-min", type=float, default=10.0, help="training time budget in minutes (default 10)")
    p.add_argument("--limit", type=int, default=30, help="records per held-out set to evaluate (default 30)")
    p.add_argument("--taskbench", default=str(TASKBENCH_DEFAULT), help="TaskBench multimedia folder")
    p.add_argument("--count", type=int, default=600, help="agx synthetic requests (default 600)")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-finetune"), help="working folder")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=512, help="cap per generated plan")
    p.add_argument("--skip-train", action="store_true", help="reuse OUT/peft from an earlier run")
    return p.parse_args()


def run(cmd: list[str], **kw) -> None:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def evaluate(dataset: Path, adapter: Path | None, args) -> dict:
    from agx.config import load_config
    from agx.runtime.pool import EnginePool
    from agx.training.eval_plans import EvalOptions, evaluate_records, load_plan_records

    overrides = [f"roles.delta.n_threads={args.threads}", "roles.delta.n_ctx=4096",
                 "roles.delta.sampling.temperature=0", "roles.delta.sampling.repeat_penalty=1.0"]
    config = load_config(ROOT, overrides=overrides, use_user_file=False).config
    if adapter is not None:
        config.roles.delta.adapter = str(adapter)
    pool = EnginePool(config, ROOT)
    try:
        records = load_plan_records(dataset, args.limit)
        label = "adapter" if adapter else "base"

        def progress(i, r):
            print(f"  {dataset.stem} {label} [{i + 1}/{len(records)}] node {r['node_f1']:.2f} "
                  f"{'valid' if r['valid'] else 'invalid'} {r['seconds']:.0f}s", file=sys.stderr, flush=True)

        summary, results = evaluate_records(records, pool.engine("delta"), dataset.parent,
                                            EvalOptions(max_tokens=args.max_tokens), on_result=progress)
    finally:
        pool.close()
    return {"summary": summary.as_dict(), "results": results}


def main() -> int:
    args = parse_args()
    out = Path(args.out).resolve()
    data, peft, adapter = out / "data", out / "peft", out / "adapter.gguf"
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    t0 = time.time()
    data_cmd = [py, "-m", "agx", "data", "delta", "-o", str(data), "--count", str(args.count)]
    if Path(args.taskbench).is_dir():
        data_cmd += ["--taskbench", args.taskbench]
    else:
        print(f"bench: no TaskBench data at {args.taskbench}; agx's own set only", file=sys.stderr)
    run(data_cmd)
    if not args.skip_train:
        run([py, "scripts/train.py", "--base", "bundled:smollm2", "--data", str(data / "delta-train.jsonl"),
             "--out", str(peft), "--time-budget-min", str(args.budget_min), "--epochs", "1",
             "--batch-size", "1", "--grad-accum", str(args.grad_accum), "--lr", str(args.lr),
             "--rank", str(args.rank), "--alpha", str(2 * args.rank), "--max-seq-len", "2048",
             "--threads", str(args.threads), "--warmup-ratio", "2",
             # The budget decides the step count, so a constant rate after 2 warmup steps.
             "--lr-scheduler", "constant_with_warmup"])
    train = json.loads((peft / "metrics.json").read_text())
    from agx.runtime.bundled import bundled_model_path
    from agx.training.convert_lora import convert_peft_to_gguf

    convert_peft_to_gguf(peft, bundled_model_path(), adapter)
    sets = [data / "delta-validation.jsonl", data / "taskbench-multimedia-validation.jsonl"]
    results = {}
    for dataset in sets:
        if not dataset.is_file():
            continue
        for label, ad in (("base", None), ("adapter", adapter)):
            r = evaluate(dataset, ad, args)
            results[f"{dataset.stem}/{label}"] = r["summary"]
            (out / f"eval-{dataset.stem}-{label}.jsonl").write_text(
                "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in r["results"]), encoding="utf-8")

    lines = []
    lines.append(f"Delta LoRA on SmolLM2-135M (CPU, {args.threads} threads): {train['steps']} steps in "
                 f"{train['train_seconds']:.0f} s (budget {args.budget_min} min), {train['tokens_seen']} tokens, "
                 f"{train['tokens_per_second']} tokens/s; loss {train['first_loss']:.3f} -> {train['last_loss']:.3f}")
    head = f"{'set / model':<44} {'n':>4} {'parse%':>7} {'validDAG%':>9} {'nodeF1':>7} {'edgeF1':>7}"
    lines += [head, "-" * len(head)]
    for key, s in results.items():
        lines.append(f"{key:<44} {s['samples']:>4} {s['parseable_pct']:>7.1f} {s['valid_pct']:>9.1f} "
                     f"{s['node_f1']:>7.2f} {s['edge_f1']:>7.2f}")
    for name, n, e in PUBLISHED:
        lines.append(f"{'taskbench-multimedia/' + name:<44} {128:>4} {'-':>7} {'-':>9} {n:>7.2f} {e:>7.2f}")
    for dataset in sets:
        b, a = results.get(f"{dataset.stem}/base"), results.get(f"{dataset.stem}/adapter")
        if b and a:
            ratio = (a["node_f1"] / b["node_f1"]) if b["node_f1"] else float("inf")
            lines.append(f"{dataset.stem}: node F1 adapter/base = {ratio:.2f}x "
                         f"({b['node_f1']:.2f} -> {a['node_f1']:.2f}); edge F1 {b['edge_f1']:.2f} -> {a['edge_f1']:.2f}")
    lines.append(f"total wall time {(time.time() - t0) / 60:.1f} min; eval: first {args.limit} records per set, greedy, "
                 f"grammar-constrained, max {args.max_tokens} tokens")
    report = "\n".join(lines)
    print(report)
    (out / "bench_finetune.json").write_text(json.dumps({"args": vars(args), "train": train, "eval": results}, indent=2))
    (out / "bench_finetune.txt").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
