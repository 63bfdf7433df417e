"""Tool retrieval for Delta: full catalogue vs the most relevant tools, on TaskBench.

    python bench/bench_mcp_retrieval.py [--limit 40] [--k 20 10] [--max-tokens 512]

TaskBench multimedia (../shared/data/taskbench/multimedia: 40 tools), held-out split (ids
ending 0-2, 128 requests; --limit takes the first N). For each request, in the same process
with the same model (Delta's role: the bundled SmolLM2-135M unless agx.toml says otherwise),
Delta plans once per configuration, interleaved request by request:

  full   every tool in the prompt and grammar
  k=K    only the K tools BM25 retrieval picks for the request (agx/planning/retrieval.py)

Greedy decoding, no repair round (round 0 of agx's planner: prompt + plan grammar). Reported per
configuration: prompt tokens, plan time, parseable %, valid %, node F1, edge F1 (TaskBench's
definitions, agx/training/metrics.py) and retrieval recall (share of gold tools offered).

Part 2: a 200-tool catalogue (agx's 8 tools, TaskBench's 40, 152 synthetic service tools):
prompt tokens and grammar size, full vs retrieval to 20, against n_ctx 4096.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKBENCH = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=40, help="held-out requests (of 128)")
    ap.add_argument("--k", type=int, nargs="+", default=[20, 10], help="retrieval sizes")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--n-ctx", type=int, default=4096)
    args = ap.parse_args()

    from agx.config import load_config
    from agx.planning.planner import Planner
    from agx.planning.retrieval import ToolIndex
    from agx.runtime.pool import EnginePool
    from agx.training.metrics import gold_of, score_sample
    from agx.training.taskbench import convert_taskbench

    conv = convert_taskbench(TASKBENCH)
    records = [r for r in conv.records if r["split"] == "validation"][: args.limit]
    catalogue = conv.catalogue
    index = ToolIndex(catalogue)
    cfg = load_config(ROOT, overrides=[f"roles.delta.n_ctx={args.n_ctx}"]).config
    rc = cfg.roles.delta
    rc.sampling.temperature, rc.sampling.repeat_penalty = 0.0, 1.0
    pool = EnginePool(cfg, ROOT)
    engine = pool.engine("delta")
    engine.wait_loaded()
    print(f"model: {engine.info().model}; {len(records)} held-out TaskBench multimedia requests; "
          f"catalogue {len(catalogue)} tools; max_tokens {args.max_tokens}, greedy, no repair round")
    configs = ["full", *[f"k={k}" for k in args.k]]
    planners = {"full": None}
    rows: dict[str, dict[str, list]] = {c: {"prompt": [], "secs": [], "parse": [], "valid": [], "node": [], "edge": [],
                                            "recall": []} for c in configs}
    t_start = time.perf_counter()
    for i, record in enumerate(records, 1):
        gold_nodes, gold_edges = gold_of(record)
        for c in configs:
            cat = catalogue if c == "full" else index.select(record["request"], int(c[2:]))
            planner = Planner(engine, cat, repair_rounds=0, max_tokens=args.max_tokens)
            result = planner.plan(record["request"])
            gen = result.stats.generations[0] if result.stats.generations else None
            score = score_sample(result.plan_dict, result.ok, gold_nodes, gold_edges)
            row = rows[c]
            row["prompt"].append(gen.prompt_tokens if gen else 0)
            row["secs"].append(result.stats.total_s)
            row["parse"].append(score.parseable)
            row["valid"].append(score.valid)
            row["node"].append(score.node_f1)
            if score.edge_f1 is not None:
                row["edge"].append(score.edge_f1)
            offered = set(cat.names())
            row["recall"].append(len(set(gold_nodes) & offered) / len(set(gold_nodes)) if gold_nodes else 1.0)
        print(f"[{i}/{len(records)}] " + "  ".join(
            f"{c}: {rows[c]['prompt'][-1]} tok, {rows[c]['secs'][-1]:.1f}s, parse {rows[c]['parse'][-1]:d}, "
            f"valid {rows[c]['valid'][-1]:d}, nodeF1 {rows[c]['node'][-1]:.2f}, recall {rows[c]['recall'][-1]:.2f}"
            for c in configs), file=sys.stderr, flush=True)
    pool.close()

    def mean(xs):
        return statistics.mean(xs) if xs else float("nan")

    head = f"{'catalogue':<10} {'tools':>5} {'prompt tok':>10} {'plan s':>7} {'parse%':>7} {'valid%':>7} {'nodeF1':>7} {'edgeF1':>7} {'recall':>7}"
    print(head)
    print("-" * len(head))
    for c in configs:
        r = rows[c]
        tools = len(catalogue) if c == "full" else int(c[2:])
        print(f"{c:<10} {tools:>5} {mean(r['prompt']):>10.0f} {mean(r['secs']):>7.2f} {100 * mean(r['parse']):>7.1f} "
              f"{100 * mean(r['valid']):>7.1f} {100 * mean(r['node']):>7.2f} {100 * mean(r['edge']):>7.2f} "
              f"{mean(r['recall']):>7.3f}")
    print(f"(edge F1 over the {len(rows['full']['edge'])} requests with gold links; {time.perf_counter() - t_start:.0f} s in all)")

    part2(args.n_ctx)
    return 0


def part2(n_ctx: int) -> None:
    from llama_cpp import Llama

    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.prompt import build_plan_messages
    from agx.planning.retrieval import select_tools
    from agx.planning.schema_grammar import plan_gbnf
    from agx.planning.tools import Risk, ToolCatalogue, ToolSpec, load_catalogue_file
    from agx.runtime.bundled import bundled_model_path

    cat = ToolCatalogue.of([*builtin_catalogue(), *load_catalogue_file(TASKBENCH / "tool_desc.json")])
    verbs = ["create", "list", "get", "update", "delete", "search", "export", "import", "archive", "sync", "watch"]
    things = ["issue", "pull_request", "branch", "ticket", "invoice", "customer", "calendar_event", "email",
              "document", "dashboard", "metric", "alert", "deployment", "database_row"]
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "query": {"type": "string"},
                                               "limit": {"type": "integer"}}, "required": ["id"], "additionalProperties": False}
    for i, (v, t) in enumerate((v, t) for t in things for v in verbs):
        if len(cat) == 200:
            break
        cat.add(ToolSpec(f"svc{i % 9}.{v}_{t}", f"{v.capitalize()} a {t.replace('_', ' ')} in the team's service.",
                         schema, Risk.READ if v in ("list", "get", "search") else Risk.EXEC, True))
    vocab = Llama(str(bundled_model_path()), vocab_only=True, verbose=False)
    request = "Search the tickets for the login alert and create an issue for it"

    def tokens(c) -> int:
        return len(vocab.tokenize("\n".join(m["content"] for m in build_plan_messages(request, c)).encode()))

    sub = select_tools(cat, request, 20, always=builtin_catalogue().names())
    print(f"\n200-tool catalogue, request {request!r}:")
    for label, c in (("full", cat), ("retrieval 20", sub)):
        t0 = time.perf_counter()
        grammar = plan_gbnf(c)
        n = tokens(c)
        print(f"  {label:<13} {len(c):>3} tools: prompt {n:>5} tokens ({'fits' if n + 1024 <= n_ctx else 'does NOT fit'} "
              f"n_ctx {n_ctx} with 1024 left for the plan), grammar {len(grammar) / 1e6:.2f} MB of GBNF "
              f"built in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
