#!/usr/bin/env python3
"""CPU training throughput: the target-only loss vs trl's full-logits loss, same run.

    python bench/bench_train_loss.py [--data runs/delta-s4/data/delta-train.jsonl] [--steps 4]

Runs scripts/train.py twice on the bundled SmolLM2-135M over the same first records of a plan
training file (default: a fresh `agx.training.delta_mix` build), the same seed and optimizer
steps: once with --full-logits (trl's fused head, which on a CPU projects every position onto
the vocabulary) and once as shipped (logits at the trained positions only,
agx/training/target_loss.py). Prints tokens/s of each, the ratio, and both loss histories
(they should agree to rounding: the same loss, computed on fewer logits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKBENCH = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="training JSONL (default: build the Delta mix into a temp folder)")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per run (default 4)")
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="agx-bench-loss-") as tmp:
        data = Path(args.data) if args.data else None
        if data is None:
            subprocess.run([sys.executable, "-m", "agx.training.delta_mix", "-o", f"{tmp}/mix",
                            "--taskbench", str(TASKBENCH)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            data = Path(tmp) / "mix" / "delta-train.jsonl"
        records = args.steps * args.grad_accum
        results = {}
        for label, extra in (("full logits (trl)", ["--full-logits"]), ("target positions only", [])):
            out = Path(tmp) / label.split()[0]
            cmd = [sys.executable, "scripts/train.py", "--base", "bundled:smollm2", "--data", str(data),
                   "--out", str(out), "--max-steps", str(args.steps), "--grad-accum", str(args.grad_accum),
                   "--limit", str(records), "--threads", str(args.threads), "--lr", "6e-4",
                   "--lr-scheduler", "constant", "--no-progress", *extra]
            print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            results[label] = json.loads((out / "metrics.json").read_text())
    base, fast = results["full logits (trl)"], results["target positions only"]
    print(f"{'loss computation':<24} {'tokens/s':>9} {'seconds':>8}  loss per step")
    for label, m in results.items():
        losses = " ".join(f"{x:.4f}" for x in m["loss_history"])
        print(f"{label:<24} {m['tokens_per_second']:>9.1f} {m['train_seconds']:>8.1f}  {losses}")
    print(f"speed-up (target-only / full): {fast['tokens_per_second'] / base['tokens_per_second']:.2f}x "
          f"over {fast['tokens_seen']} tokens ({records} records, {args.steps} steps)")
    drift = max(abs(a - b) for a, b in zip(base["loss_history"], fast["loss_history"]))
    print(f"largest per-step loss difference: {drift:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
