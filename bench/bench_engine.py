"""Decode speed through agx's engine path vs a bare llama-cpp-python loop, same GGUF/threads.

    python bench/bench_engine.py [--model PATH] [--tokens 128] [--reps 3] [--threads 2]

Baseline: `Llama.generate` on the same prompt tokens with greedy sampling, timed per token,
in the same process and run. agx path: EnginePool -> LlamaCppEngine.chat (streamed chat
completion, cancel checks, stats). Prints decode tokens/s, time to first token, and the ratio
agx / bare (target >= 0.97).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a map. Use many paragraphs."


def bare_run(llama, prompt_tokens: list[int], n: int) -> tuple[float, float, int]:
    llama.reset()
    t0 = time.perf_counter()
    first = None
    count = 0
    for tok in llama.generate(prompt_tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        count += 1
        if first is None:
            first = time.perf_counter()
        if tok == llama.token_eos() or count >= n:
            break
    end = time.perf_counter()
    return first - t0, (count - 1) / (end - first), count


def agx_run(engine, n: int) -> tuple[float, float, int]:
    from agx.runtime.engine import ChatRequest

    engine.model.llama.reset()
    stream = engine.chat(ChatRequest(messages=[{"role": "user", "content": PROMPT}], max_tokens=n, temperature=0.0))
    stream.read()
    s = stream.stats
    return s.time_to_first_token_s, s.tokens_per_s, s.completion_tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M)")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from llama_cpp import Llama

    from agx.config import load_config
    from agx.runtime.bundled import bundled_model_path
    from agx.runtime.pool import EnginePool

    model = args.model or str(bundled_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(tmp, use_user_file=False, overrides=[
            f"roles.echo.model={model!r}", f"roles.echo.n_threads={args.threads}", "roles.echo.n_ctx=2048",
            "roles.echo.sampling.top_k=1", "roles.echo.sampling.repeat_penalty=1.0", "roles.echo.sampling.min_p=0.0",
        ]).config
        pool = EnginePool(cfg, Path(tmp))
        engine = pool.engine("echo")
        engine.wait_loaded()
        bare = Llama(model_path=model, n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
        # The bare loop gets exactly the prompt the chat template produces, so both decode the same context.
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        meta = bare.metadata
        fmt = Jinja2ChatFormatter(
            template=meta["tokenizer.chat_template"],
            eos_token=bare._model.token_get_text(bare.token_eos()),
            bos_token=bare._model.token_get_text(bare.token_bos()),
        )
        prompt = fmt(messages=[{"role": "user", "content": PROMPT}]).prompt
        prompt_tokens = bare.tokenize(prompt.encode(), add_bos=True, special=True)

        agx_tps, bare_tps, agx_ttft, bare_ttft = [], [], [], []
        agx_run(engine, 8)
        bare_run(bare, prompt_tokens, 8)  # warm-up both
        for _ in range(args.reps):  # interleaved so machine noise hits both alike
            ttft, tps, n_agx = agx_run(engine, args.tokens)
            agx_ttft.append(ttft)
            agx_tps.append(tps)
            ttft, tps, n_bare = bare_run(bare, prompt_tokens, args.tokens)
            bare_ttft.append(ttft)
            bare_tps.append(tps)
        pool.close()
        bare.close()

    a, b = statistics.median(agx_tps), statistics.median(bare_tps)
    print(f"model: {Path(model).name}, threads {args.threads}, {args.tokens} tokens, {args.reps} reps (median)")
    print(f"{'path':<28}{'decode tok/s':>14}{'TTFT ms':>10}")
    print(f"{'bare llama-cpp-python loop':<28}{b:>14.1f}{statistics.median(bare_ttft) * 1000:>10.0f}")
    print(f"{'agx engine (streamed chat)':<28}{a:>14.1f}{statistics.median(agx_ttft) * 1000:>10.0f}")
    print(f"ratio agx/bare: {a / b:.3f} (target >= 0.97); tokens generated agx {n_agx}, bare {n_bare}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
