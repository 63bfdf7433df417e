#!/usr/bin/env python3
"""CPU training throughput: what the one-command Delta recipe trains with vs train.py's older CPU path.

    python bench/bench_train_precision.py [--data runs/agenix-delta-smollm2/stage2/data/delta-train.jsonl] [--steps 4]

Runs scripts/train.py three times on the bundled SmolLM2-135M over the same first records of a plan
training file (default: a fresh `agx.training.delta_mix` build), same seed and optimizer steps:
  1. fp32, LoRA dropout 0.05   (train.py's CPU path before --cpu-bf16; the baseline)
  2. fp32, LoRA dropout 0      (dropout draws a Bernoulli mask at each of the 210 LoRA inputs per
                                forward: a quarter of a step's CPU time in torch's profiler)
  3. bf16 autocast, bf16 frozen base, dropout 0   (scripts/train_delta_smollm2.sh; needs a CPU
                                with native bf16 -- AVX512-BF16 or AMX -- else it is emulated)
Prints tokens/s and seconds of each, the ratios to the baseline, and the loss per step (bf16's
differ from fp32's by its rounding: the adapter's quality is measured by bench_delta_adapter.py,
not here).
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
VARIANTS = (
    ("fp32, dropout 0.05 (baseline)", ["--cpu-bf16", "off", "--dropout", "0.05"]),
    ("fp32, dropout 0", ["--cpu-bf16", "off", "--dropout", "0"]),
    ("bf16, dropout 0 (recipe)", ["--cpu-bf16", "on", "--dropout", "0"]),
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="training JSONL (default: build the Delta mix into a temp folder)")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per run (default 4)")
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    from train import cpu_has_native_bf16  # noqa: E402  (scripts/ is not a package)

    print(f"CPU has native bf16: {cpu_has_native_bf16()}")
    with tempfile.TemporaryDirectory(prefix="agx-bench-precision-") as tmp:
        data = Path(args.data) if args.data else None
        if data is None:
            subprocess.run([sys.executable, "-m", "agx.training.delta_mix", "-o", f"{tmp}/mix", "--style", "compact",
                            "--taskbench", str(TASKBENCH)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            data = Path(tmp) / "mix" / "delta-train.jsonl"
        records = args.steps * args.grad_accum
        results = {}
        for i, (label, extra) in enumerate(VARIANTS):
            out = Path(tmp) / f"run{i}"
            cmd = [sys.executable, "scripts/train.py", "--base", "bundled:smollm2", "--data", str(data),
                   "--out", str(out), "--max-steps", str(args.steps), "--grad-accum", str(args.grad_accum),
                   "--limit", str(records), "--threads", str(args.threads), "--lr", "3e-4", "--group-by-length",
                   "--no-progress", *extra]
            print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            results[label] = json.loads((out / "metrics.json").read_text())
    base = results[VARIANTS[0][0]]
    print(f"{'precision, LoRA dropout':<32} {'tokens/s':>9} {'seconds':>8} {'ratio':>6}  loss per step")
    for label, m in results.items():
        losses = " ".join(f"{x:.4f}" for x in m["loss_history"])
        ratio = m["tokens_per_second"] / base["tokens_per_second"]
        print(f"{label:<32} {m['tokens_per_second']:>9.1f} {m['train_seconds']:>8.1f} {ratio:>5.2f}x  {losses}")
    print(f"over {base['tokens_seen']} tokens ({records} records, {args.steps} steps) per run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
