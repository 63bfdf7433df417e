"""Tool retrieval's word stems: Snowball English (agx now) vs the suffix strip it replaced.

    python bench/bench_retrieval_stem.py [--k 10 20 28]

TaskBench multimedia (../shared/data/taskbench/multimedia: 40 tools), held-out split (ids ending
0-2, 128 requests), on its catalogue and on the renamed one agx's eval uses for "does the planner
read a catalogue" (delta_mix.renamed_catalogue: other names and wording, the same tools). For each
request and k, agx's selection (ToolIndex.select: tools the request names, then the best BM25
matches) with each tokenizer, in one process:

  suffix     the earlier agx tokenizer: lower-case words less stopwords, -ies/-ing/-ed/-es/-s
             stripped (kept here as the baseline)
  snowball   agx/planning/retrieval.py as is (Snowball English stems, snowballstemmer)

Reported per catalogue, method and k: requests with a gold tool left out of the k offered (the
planner cannot use a tool it is not shown), gold tool uses left out, recall (share of each
request's gold tools offered, averaged) and the time per query. Gold tools missing from the
catalogue itself (TaskBench has a few) are not counted against either method. No model runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
TASKBENCH = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"


def _suffix_stem(word: str) -> str:
    """The stem agx used before Snowball (the baseline)."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + keep
    return word


def _measure(catalogue, requests: list[tuple[str, list[str]]], ks: list[int]) -> dict[int, dict[str, float]]:
    from agx.planning.retrieval import ToolIndex

    index = ToolIndex(catalogue)
    names = set(catalogue.names())
    out = {}
    for k in ks:
        missed_requests = missed_uses = 0
        recalls, times = [], []
        for request, gold in requests:
            t0 = time.perf_counter()
            offered = set(index.select(request, k).names())
            times.append(time.perf_counter() - t0)
            in_catalogue = [g for g in gold if g in names]
            left_out = [g for g in in_catalogue if g not in offered]
            missed_uses += len(left_out)
            missed_requests += bool(left_out)
            if in_catalogue:
                recalls.append(1 - len(left_out) / len(in_catalogue))
        out[k] = {"requests": missed_requests, "uses": missed_uses, "recall": 100 * statistics.mean(recalls),
                  "ms": 1000 * statistics.mean(times)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[10, 20, 28])
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))

    from agx.planning import retrieval
    from agx.training.delta_mix import _rename_text, renamed_catalogue
    from agx.training.taskbench import convert_taskbench

    conv = convert_taskbench(TASKBENCH)
    held_out = [r for r in conv.records if r["split"] == "validation"]
    renamed = renamed_catalogue(conv.catalogue)
    sets = {
        "taskbench": (conv.catalogue, [(r["request"], [t["tool"] for t in r["plan"]["tasks"]]) for r in held_out]),
        "renamed": (renamed, [(r["request"], [_rename_text(t["tool"]) for t in r["plan"]["tasks"]]) for r in held_out]),
    }
    print(f"{len(held_out)} held-out TaskBench multimedia requests, {len(conv.catalogue)} tools")
    print(f"{'catalogue':<10} {'method':<9} {'k':>3} {'requests missing a tool':>24} {'uses missed':>12} "
          f"{'recall %':>9} {'ms/query':>9}")
    results = {}
    for set_name, (catalogue, requests) in sets.items():
        for method, stems in (("suffix", mock.patch.object(retrieval, "_stem", _suffix_stem)),
                              ("snowball", nullcontext())):
            with stems:
                results[set_name, method] = _measure(catalogue, requests, args.k)
            for k, m in results[set_name, method].items():
                print(f"{set_name:<10} {method:<9} {k:>3} {m['requests']:>24} {m['uses']:>12} "
                      f"{m['recall']:>9.1f} {m['ms']:>9.2f}")
    print("\nratios, snowball / suffix (requests missing a gold tool; lower is better):")
    for set_name in sets:
        line = ", ".join(
            f"@{k} {results[set_name, 'snowball'][k]['requests']}/{results[set_name, 'suffix'][k]['requests']} = "
            f"{results[set_name, 'snowball'][k]['requests'] / max(results[set_name, 'suffix'][k]['requests'], 1):.2f}x"
            for k in args.k)
        print(f"  {set_name}: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
