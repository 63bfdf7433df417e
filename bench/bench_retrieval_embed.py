"""Tool retrieval: BM25 vs the bundled model's own embeddings vs both (reciprocal-rank fusion).

    python bench/bench_retrieval_embed.py [--limit 128] [--k 5 10 20]

TaskBench multimedia (../shared/data/taskbench/multimedia: 40 tools), held-out split (ids ending
0-2, 128 requests). For each request and each k, in one process:

  bm25        agx/planning/retrieval.py as is (ToolIndex.select: tools the request names, then
              the best BM25 matches)
  embeddings  the same selection, ranked by the cosine similarity of the request's and each
              tool's (retrieval.tool_text) mean-pooled embedding from the bundled GGUF
              (SmolLM2-135M, llama_cpp.Llama(embedding=True)); tool vectors computed once
  hybrid      the same selection, ranked by reciprocal-rank fusion of the two rankings
              (score = sum of 1 / (60 + rank))

Reported per method and k: recall (share of each request's gold tools among the k offered,
averaged), all-gold (share of requests with every gold tool offered) and the time per query
(ranking only; the embedding model's load and the tools' vectors are reported once).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKBENCH = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"
RRF_K = 60


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def _ranks(scores: list[float]) -> list[int]:
    """Rank (0 = best) of each tool; ties in catalogue order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=128, help="held-out requests (of 128)")
    ap.add_argument("--k", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

    from agx.planning.retrieval import ToolIndex, named_tools, tool_text
    from agx.runtime.bundled import bundled_model_path
    from agx.training.metrics import gold_of
    from agx.training.taskbench import convert_taskbench

    conv = convert_taskbench(TASKBENCH)
    records = [r for r in conv.records if r["split"] == "validation"][: args.limit]
    catalogue = conv.catalogue
    names = catalogue.names()

    t0 = time.perf_counter()
    index = ToolIndex(catalogue)
    bm25_build = time.perf_counter() - t0

    path = bundled_model_path()
    t0 = time.perf_counter()
    llm = Llama(str(path), embedding=True, pooling_type=LLAMA_POOLING_TYPE_MEAN, n_ctx=512, n_batch=512,
                n_threads=args.threads, verbose=False)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tool_vecs = [_unit(llm.embed(tool_text(spec))) for spec in catalogue]
    tools_s = time.perf_counter() - t0
    print(f"{len(records)} held-out TaskBench multimedia requests, {len(catalogue)} tools; "
          f"BM25 index {bm25_build * 1000:.1f} ms; embedding model {path.name} loaded in {load_s:.2f} s, "
          f"{len(catalogue)} tool vectors (dim {len(tool_vecs[0])}) in {tools_s:.2f} s")

    def select(request: str, scores: list[float], k: int) -> set[str]:
        """ToolIndex.select's rule with other scores: named tools first, then the ranking."""
        keep = [n for n in named_tools(catalogue, request)]
        for i in sorted(range(len(names)), key=lambda i: (-scores[i], i)):
            if len(keep) >= k:
                break
            if names[i] not in keep:
                keep.append(names[i])
        return set(keep[:k])

    methods = ["bm25", "embeddings", "hybrid"]
    recall = {(m, k): [] for m in methods for k in args.k}
    allgold = {(m, k): [] for m in methods for k in args.k}
    secs = {m: [] for m in methods}

    def score(m: str, k: int, chosen: set[str], gold: set[str]) -> None:
        recall[(m, k)].append(len(gold & chosen) / len(gold) if gold else 1.0)
        allgold[(m, k)].append(gold <= chosen)

    for i, record in enumerate(records, 1):
        request = record["request"]
        gold = set(gold_of(record)[0])
        # bm25, as agx does it (one select per k; timed for the largest k)
        for k in args.k:
            t0 = time.perf_counter()
            chosen = set(index.select(request, k).names())
            dt = time.perf_counter() - t0
            score("bm25", k, chosen, gold)
        secs["bm25"].append(dt)
        t0 = time.perf_counter()
        q = _unit(llm.embed(request))
        emb = [sum(a * b for a, b in zip(q, v)) for v in tool_vecs]
        emb_sel = {k: select(request, emb, k) for k in args.k}
        secs["embeddings"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        q = _unit(llm.embed(request))
        emb = [sum(a * b for a, b in zip(q, v)) for v in tool_vecs]
        bm = index.scores(request)
        rb, re_ = _ranks(bm), _ranks(emb)
        fused = [1.0 / (RRF_K + rb[j]) + 1.0 / (RRF_K + re_[j]) for j in range(len(names))]
        hyb_sel = {k: select(request, fused, k) for k in args.k}
        secs["hybrid"].append(time.perf_counter() - t0)
        for k in args.k:
            score("embeddings", k, emb_sel[k], gold)
            score("hybrid", k, hyb_sel[k], gold)
        if i % 16 == 0:
            print(f"[{i}/{len(records)}]", file=sys.stderr, flush=True)

    head = f"{'method':<11}" + "".join(f" {'recall@' + str(k):>10} {'all@' + str(k):>7}" for k in args.k) + f" {'ms/query':>9}"
    print(head)
    print("-" * len(head))
    for m in methods:
        cells = "".join(f" {statistics.mean(recall[(m, k)]):>10.3f} {100 * statistics.mean(allgold[(m, k)]):>6.1f}%"
                        for k in args.k)
        print(f"{m:<11}{cells} {1000 * statistics.median(secs[m]):>9.2f}")
    print(f"(recall: share of a request's gold tools among the k offered, averaged; all@k: requests with every "
          f"gold tool offered; ms/query: median, bm25 one select at k={args.k[-1]}, the others embed + rank all k)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
