"""The shipped Delta adapter against the bare bundled model, same run, same held-out files (issue #15).

    python bench/bench_delta_adapter.py [--data DIR] [--limit-coding N] [--limit-taskbench N]
                                        [--limit-renamed N] [--adapter agenix-delta-smollm2]

For each held-out file of Delta's mix (agx/training/delta_mix.py, rebuilt into a temporary folder
unless --data names one):

  delta-validation                      agx's coding requests in 3 projects never trained on
  taskbench-multimedia-validation       TaskBench multimedia's held-out split (ids ending 0-2), 128
  taskbench-multimedia-renamed          the same 128 requests over a catalogue never trained on:
                                        every tool renamed (delta_mix.RENAMED_TOOLS)
  taskbench-multimedia-unseen-tools     requests using tools no training prompt showed (only in a
                                        mix built with --unseen-tools N)

it runs what a user runs, `agx eval plans FILE --adapter none|NAME` (a subprocess each: greedy,
constrained as `agx plan` constrains it over the tools in each record's prompt (`--decoding schema`:
the plan's JSON schema only, as figures before 2026-12-02 were measured), TaskBench's scoring with unparseable
outputs counted as empty), and prints parseable %, valid DAG %, node F1, edge F1 and seconds per
record for base and adapter, and the adapter's ratio to the base. The adapter runs every file first, then
the base, and the summary is rewritten after each run, so a long bench cut short still leaves the
adapter's figures. `--base-figures MANIFEST` skips the base's runs and takes its figures from an
adapter manifest this bench wrote earlier (the bare model's outputs do not change while the
held-out files keep their sha256: greedy, same prompts), marked `base*` in the table. For the
TaskBench sets it also prints where node F1 goes (agx.training.metrics.plan_shapes: single- vs
multi-tool requests, multi-tool requests planned as one task) and where edge F1 goes (metrics.edge_losses: each gold
edge a hit, reversed, indirect, unwired, or missing a tool); for agx's coding requests, whether the
plans give the edit the files the request needs (metrics.write_losses). Run it on an idle machine (under the CPU lock on a shared one): runs are
sequential, never concurrent. Results: bench/results/delta-adapter/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from agx.training.metrics import edge_losses, plan_shapes, write_losses
from agx.training.records import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
# TaskBench first: the figures the targets are on come out first.
SETS = ("taskbench-multimedia-validation", "taskbench-multimedia-renamed", "delta-validation",
        "taskbench-multimedia-unseen-tools")
TASKBENCH = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"


def build_data(out: Path) -> None:
    subprocess.run([sys.executable, "-m", "agx.training.delta_mix", "-o", str(out), "--coding", "300",
                    "--style", "compact", "--taskbench", str(TASKBENCH)], check=True, cwd=ROOT)


def evaluate(data: Path, name: str, adapter: str, limit: int | None, out_dir: Path, threads: int,
             decoding: str = "planner") -> dict:
    out = out_dir / f"{'base' if adapter == 'none' else 'adapter'}-{name}.jsonl"
    cmd = [sys.executable, "-m", "agx", "--set", f"roles.delta.n_threads={threads}", "eval", "plans",
           str(data / f"{name}.jsonl"), "--adapter", adapter, "--out", str(out), "--quiet", "--decoding", decoding]
    if limit:
        cmd += ["--limit", str(limit)]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "AGX_SKIP_BUILD_CHECK": "1"})
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    summary["s_per_record"] = summary["extra"]["seconds"] / max(1, summary["samples"])
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a folder written by agx.training.delta_mix (default: build one)")
    ap.add_argument("--adapter", default="agenix-delta-smollm2")
    ap.add_argument("--limit-coding", type=int, default=0, help="first N records of delta-validation (0: all 84)")
    ap.add_argument("--limit-taskbench", type=int, default=0, help="first N of the TaskBench held-out split (0: all 128)")
    ap.add_argument("--limit-renamed", type=int, default=0, help="first N of the renamed-catalogue file (0: all 128)")
    ap.add_argument("--limit-unseen", type=int, default=0, help="first N of the unseen-tools file, if the mix has one (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decoding", choices=["planner", "schema"], default="planner",
                    help="planner: constrained as `agx plan` constrains it, at least one task per numbered goal step when the "
                    "adapter's manifest says so (default); schema: the plan's JSON schema only (figures before 2026-12-02)")
    ap.add_argument("--write-manifest", action="store_true",
                    help="record the figures (per set: adapter and base) and this command in adapters/NAME/manifest.json")
    ap.add_argument("--base-figures", type=Path,
                    help="don't run the base: take its figures from this adapter manifest's eval.<set>.base")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "delta-adapter")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    limits = dict(zip(SETS, (args.limit_taskbench, args.limit_renamed, args.limit_coding, args.limit_unseen)))
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="agx-bench-delta-") as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "data"
            build_data(data)
        sets = [name for name in SETS if (data / f"{name}.jsonl").is_file()]
        runs = [("adapter", args.adapter)] + ([] if args.base_figures else [("base", "none")])
        for label, adapter in runs:
            for name in sets:
                results.setdefault(name, {})[label] = evaluate(data, name, adapter, limits[name] or None, args.out, args.threads,
                                                            args.decoding)
                (args.out / "summary.json").write_text(json.dumps(results, indent=2))
    if args.base_figures:
        stored = json.loads(args.base_figures.read_text()).get("eval") or {}
        for name, r in results.items():
            base = (stored.get(name) or {}).get("base")
            if base and base.get("samples") == r["adapter"]["samples"]:
                r["base"] = {**base, "s_per_record": float("nan"), "stored": str(args.base_figures)}
    rows = [(name, r["base"], r["adapter"]) for name, r in results.items() if "base" in r]
    head = f"{'set':<36} {'model':<8} {'n':>4} {'parse%':>7} {'valid%':>7} {'nodeF1':>7} {'edgeF1':>7} {'s/rec':>6}"
    print(head)
    print("-" * len(head))
    for name, base, tuned in rows:
        for label, s in (("base*" if "stored" in base else "base", base), ("adapter", tuned)):
            print(f"{name:<36} {label:<8} {s['samples']:>4} {s['parseable_pct']:>7.1f} {s['valid_pct']:>7.1f} "
                  f"{s['node_f1']:>7.2f} {s['edge_f1']:>7.2f} {s['s_per_record']:>6.2f}")
        ratio = lambda k: (f"{tuned[k] / base[k]:.2f}x" if base[k] else "n/a (base 0)")  # noqa: E731
        timing = "" if "stored" in base else f", time per record {tuned['s_per_record'] / base['s_per_record']:.2f}x"
        print(f"{'':<36} ratio    valid {ratio('valid_pct')}, node F1 {ratio('node_f1')}{timing}")
    if args.base_figures:
        print(f"base*: figures stored in {args.base_figures} (not rerun)")
    for name in results:
        for label in ("adapter", "base"):
            per_record = args.out / f"{label}-{name}.jsonl"
            if not per_record.is_file() or (label == "base" and args.base_figures):
                continue
            records = list(read_jsonl(per_record))
            if name == "delta-validation":
                breakdowns = {"files written": ("write_losses", write_losses(records))}
            elif name.startswith("taskbench"):
                breakdowns = {"": ("shapes", plan_shapes(records)), "gold edges": ("edge_losses", edge_losses(records))}
            else:
                continue
            for heading, (key, figures) in breakdowns.items():
                results[name][label][key] = figures
                print(f"{name} {label}{' ' + heading if heading else ''}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print(f"\nper-record results: {args.out}/")
    if args.write_manifest:
        # the folder `agx eval plans` took the adapter from (AGX_ADAPTERS_DIR when set), not always the repo's
        from agx.config import load_config
        from agx.runtime.adapters import adapters_dir

        folder = adapters_dir(load_config(ROOT).config)
        write_manifest_eval(folder / args.adapter / "manifest.json", results, argv, args.decoding)
    return 0


FIGURES = ("samples", "parseable_pct", "valid_pct", "node_f1", "edge_f1")


def _figures(summary: dict) -> dict:
    return {k: round(summary[k], 2) if isinstance(summary[k], float) else summary[k] for k in FIGURES}


def write_manifest_eval(path: Path, results: dict[str, dict[str, dict]], argv: list[str] | None,
                        decoding: str = "planner") -> None:
    """The adapter's manifest gets each set's figures (the adapter's at the top level, as
    `agx adapters list` reads them, and both under adapter/base) and the command that made them.
    Read and written with the runtime's manifest functions (the write is atomic)."""
    from agx.runtime.adapters import read_manifest, write_manifest

    manifest = read_manifest(path.parent)
    evals = {k: v for k, v in (manifest.get("eval") or {}).items() if k == "train"}
    for name, r in results.items():
        evals[name] = {**_figures(r["adapter"]), "adapter": _figures(r["adapter"])}
        if "base" in r:
            evals[name]["base"] = _figures(r["base"])
    manifest["eval"] = evals
    args = " ".join(sys.argv[1:] if argv is None else argv)
    manifest["eval_command"] = f"python bench/bench_delta_adapter.py {args}".strip()
    manifest["eval_decoding"] = decoding
    write_manifest(path.parent, manifest)
    print(f"figures written to {path}")


if __name__ == "__main__":
    sys.exit(main())
