"""Typed links in Delta's plan grammar: on vs off, same adapter, same held-out files, same run.

    python bench/bench_typed_links.py [--data DIR] [--adapter agenix-delta-smollm2] [--limit N]
                                      [--sets taskbench-multimedia-validation ...]

Over a catalogue whose tools declare input and output types (TaskBench multimedia's do), the
planner's grammar lets a task that depends on the task just before it use only a tool that
accepts that task's output (agx/planning/schema_grammar.py, "typed links"; roles.delta.typed_links,
on by default). This runs what a user runs, `agx eval plans FILE --adapter NAME --typed-links
off|on` (a subprocess each, greedy, the planner's grammar over each record's prompt tools), and
prints for each: parseable %, valid %, node / edge F1 (macro; micro beside), seconds per plan,
and what the rule is about: links between two tasks whose types do not fit, links from a tool to
itself, plans that use a tool twice. Then the ratio on/off. It also times building the grammar
cold for every record's tool set (no model: the cost a new retrieved tool set pays once).

Held-out files: Delta's mix (agx/training/delta_mix.py), rebuilt into a temporary folder unless
--data names one. Run it on an idle machine: runs are sequential. Results:
bench/results/typed-links/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKBENCH = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"
SETS = ("taskbench-multimedia-validation", "taskbench-multimedia-renamed")


def build_data(out: Path) -> None:
    subprocess.run([sys.executable, "-m", "agx.training.delta_mix", "-o", str(out), "--coding", "300",
                    "--style", "compact", "--taskbench", str(TASKBENCH)], check=True, cwd=ROOT)


def evaluate(data: Path, name: str, adapter: str, typed: str, limit: int | None, out_dir: Path) -> dict:
    out = out_dir / f"{name}-typed-{typed}.jsonl"
    cmd = [sys.executable, "-m", "agx", "--set", "roles.delta.n_threads=2", "eval", "plans", str(data / f"{name}.jsonl"),
           "--adapter", adapter, "--typed-links", typed, "--out", str(out), "--quiet"]
    if limit:
        cmd += ["--limit", str(limit)]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "AGX_SKIP_BUILD_CHECK": "1"})
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    summary["s_per_record"] = summary["extra"]["seconds"] / max(1, summary["samples"])
    summary.update(link_counts(out, data, name))
    return summary


def link_counts(results: Path, data: Path, name: str) -> dict[str, int]:
    """Over the plans in a results file: links whose types do not fit, self links, plans with a
    tool used twice (TaskBench's gold: 2 of 714 links misfit, 0 self links, 1 of 465 repeats)."""
    from agx.planning.tools import load_catalogue_file

    catalogues: dict[str, object] = {}
    misfit = self_links = repeats = 0
    catalogue_of = {r["id"]: r.get("catalogue") for r in map(json.loads, (data / f"{name}.jsonl").open())}
    for line in results.open():
        result = json.loads(line)
        try:
            plan = json.loads(result["output"])
            tasks = plan["tasks"]
        except (ValueError, KeyError, TypeError):
            continue
        ref = catalogue_of[result["id"]]
        if ref not in catalogues:
            catalogues[ref] = load_catalogue_file(data / ref)
        cat = catalogues[ref]
        tool_of = {t.get("id"): t.get("tool") for t in tasks if isinstance(t, dict)}
        tools = [t.get("tool") for t in tasks if isinstance(t, dict)]
        repeats += len(set(tools)) < len(tools)
        for t in tasks:
            for d in t.get("deps") or []:
                src, dst = cat.get(tool_of.get(d) or ""), cat.get(t.get("tool") or "")
                if src is None or dst is None:
                    continue
                self_links += src.name == dst.name
                misfit += not dst.accepts(src.output_types)
    return {"misfit_links": misfit, "self_links": self_links, "plans_repeating_a_tool": repeats}


def grammar_build_times(data: Path, name: str, limit: int | None) -> dict[str, float]:
    """Cold grammar builds for each record's prompt tools, untyped vs typed (seconds, median)."""
    from agx.planning.schema_grammar import build_plan_gbnf
    from agx.planning.tools import ToolCatalogue, load_catalogue_file

    times: dict[str, list[float]] = {"off": [], "on": []}
    sizes: dict[str, list[int]] = {"off": [], "on": []}
    catalogues: dict[str, ToolCatalogue] = {}
    for i, line in enumerate((data / f"{name}.jsonl").open()):
        if limit and i >= limit:
            break
        record = json.loads(line)
        ref = record["catalogue"]
        if ref not in catalogues:
            catalogues[ref] = load_catalogue_file(data / ref)
        cat = ToolCatalogue.of(catalogues[ref].get(n) for n in record["prompt_tools"])
        for mode in ("off", "on"):
            t0 = time.perf_counter()
            text = build_plan_gbnf(cat, typed_links=mode == "on")
            times[mode].append(time.perf_counter() - t0)
            sizes[mode].append(len(text))
    return {f"{k}_s": statistics.median(v) for k, v in times.items()} | {
        f"{k}_bytes": int(statistics.median(v)) for k, v in sizes.items()}


def row(label: str, s: dict) -> str:
    return (f"{label:<24} {s['parseable_pct']:>6.1f} {s['valid_pct']:>6.1f} {s['node_f1']:>7.2f} {s['edge_f1']:>7.2f} "
            f"{s['node_f1_micro']:>7.2f} {s['edge_f1_micro']:>7.2f} {s['s_per_record']:>6.2f} "
            f"{s['misfit_links']:>7} {s['self_links']:>5} {s['plans_repeating_a_tool']:>7}")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}x" if b else "– (0 off)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="a Delta mix folder (default: built into a temporary folder)")
    ap.add_argument("--adapter", default="agenix-delta-smollm2")
    ap.add_argument("--limit", type=int, help="first N records of each set")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "typed-links")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "data"
            build_data(data)
        report = {}
        for name in args.sets:
            report[name] = {typed: evaluate(data, name, args.adapter, typed, args.limit, args.out) for typed in ("off", "on")}
            report[name]["grammar"] = grammar_build_times(data, name, args.limit)
            (args.out / "summary.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nadapter {args.adapter}; greedy, the planner's grammar; TaskBench's definitions")
    print(f"{'set / typed links':<24} {'parse':>6} {'valid':>6} {'node F1':>7} {'edge F1':>7} {'node µ':>7} {'edge µ':>7} "
          f"{'s/plan':>6} {'misfit':>7} {'self':>5} {'repeats':>7}")
    for name, runs in report.items():
        for typed in ("off", "on"):
            print(row(f"{name.replace('taskbench-multimedia-', '')[:19]} {typed}", runs[typed]))
        off, on = runs["off"], runs["on"]
        g = runs["grammar"]
        print(f"  on/off: node F1 {_ratio(on['node_f1'], off['node_f1'])}, edge F1 {_ratio(on['edge_f1'], off['edge_f1'])}, "
              f"time per plan {_ratio(on['s_per_record'], off['s_per_record'])}; "
              f"grammar build (cold, median) {g['off_s'] * 1000:.0f} -> {g['on_s'] * 1000:.0f} ms "
              f"({g['on_s'] / g['off_s']:.2f}x), {g['off_bytes'] // 1024} -> {g['on_bytes'] // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
