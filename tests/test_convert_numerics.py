"""The numerical proof that a converted adapter computes what PEFT computes.

The bundled SmolLM2 is dequantized to an F32 GGUF (against the Q4_1 base, quantization noise
alone is ~0.8 in the logits). transformers loads that same GGUF (undoing llama.cpp's q/k row
permutation), peft puts a LoRA with non-trivial B on all 7 projections, the adapter is saved,
converted, and applied by agx's llama.cpp backend on the F32 base. Next-token logits must agree:
max |diff| <= 0.05, and the adapter's effect (adapter logits - base logits) must correlate
>= 0.999. A conversion without the q/k permutation must fail those thresholds — that is the
mistake this test exists to catch (it still loads and runs, just wrongly).
"""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest

from agx.runtime.llama_engine import LlamaCppModel, LoadSettings

MAX_ABS_DIFF = 0.05
MIN_EFFECT_CORR = 0.999
PROMPTS = [
    "The capital of France is Paris, and the capital of Italy is",
    "def fibonacci(n):\n    if n < 2:\n        return",
]
MEASURED = {}  # figures for the report, printed with -s


def _next_token_logits(model: LlamaCppModel, tokens: list[int]) -> np.ndarray:
    import llama_cpp

    with model.lock:
        llama = model.llama
        llama.reset()
        llama.eval(tokens)
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama.ctx, -1), shape=(llama.n_vocab(),)).copy()


@pytest.fixture(scope="module")
def proof(tmp_path_factory, tiny_model_path):
    import torch
    from llama_cpp import Llama
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from agx.training.convert_lora import convert_peft_to_gguf
    from agx.training.dequantize import dequantize_gguf

    d = tmp_path_factory.mktemp("numerics")
    f32 = d / "smollm2-f32.gguf"
    dequantize_gguf(tiny_model_path, f32)

    vocab = Llama(model_path=str(f32), vocab_only=True, verbose=False)
    token_lists = [vocab.tokenize(p.encode(), add_bos=False, special=False) for p in PROMPTS]
    vocab.close()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=f32.name, dtype=torch.float32)
    config = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    peft_model = get_peft_model(model, config).eval()
    # peft starts B at zero (the adapter would be a no-op); give it a visible effect.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    peft_model.save_pretrained(str(d / "peft"))

    hf_adapter, hf_base = [], []
    with torch.no_grad():
        for tokens in token_lists:
            ids = torch.tensor([tokens])
            hf_adapter.append(peft_model(ids).logits[0, -1].numpy().copy())
            with peft_model.disable_adapter():
                hf_base.append(peft_model(ids).logits[0, -1].numpy().copy())
    del peft_model, model
    gc.collect()

    convert_peft_to_gguf(d / "peft", f32, d / "adapter.gguf")
    convert_peft_to_gguf(d / "peft", f32, d / "adapter-unpermuted.gguf", _skip_qk_permute=True)

    settings = LoadSettings(path=str(f32), n_ctx=128, n_gpu_layers=0, n_threads=2, n_batch=128,
                            chat_format=None, adapter_path=None, adapter_scale=1.0)
    llm = LlamaCppModel(settings)
    llm.load()
    try:
        runs = {}
        for label, adapter in (("base", None), ("adapter", d / "adapter.gguf"), ("unpermuted", d / "adapter-unpermuted.gguf")):
            llm.set_adapter(adapter)  # a switch on the loaded base, no reload
            runs[label] = np.stack([_next_token_logits(llm, t) for t in token_lists])
    finally:
        llm.close()
    return {"dir": d, "hf_adapter": np.stack(hf_adapter), "hf_base": np.stack(hf_base), **runs}


def _agreement(p, label):
    diff = float(np.abs(p[label] - p["hf_adapter"]).max())
    effect_llama = (p[label] - p["base"]).ravel()
    effect_peft = (p["hf_adapter"] - p["hf_base"]).ravel()
    corr = float(np.corrcoef(effect_llama, effect_peft)[0, 1])
    MEASURED[label] = (diff, corr)
    print(f"\n{label}: max|diff| {diff:.4f}, effect correlation {corr:.5f}")
    return diff, corr


def test_adapter_is_visible_and_bases_agree(proof):
    effect = float(np.abs(proof["hf_adapter"] - proof["hf_base"]).max())
    assert effect > 0.5, "the LoRA must change the logits visibly, or agreement proves nothing"
    assert float(np.abs(proof["base"] - proof["hf_base"]).max()) < MAX_ABS_DIFF


def test_converted_adapter_matches_peft(proof):
    diff, corr = _agreement(proof, "adapter")
    assert diff <= MAX_ABS_DIFF
    assert corr >= MIN_EFFECT_CORR


def test_without_qk_permutation_the_check_fails(proof):
    diff, corr = _agreement(proof, "unpermuted")
    assert diff > MAX_ABS_DIFF and corr < MIN_EFFECT_CORR


def test_real_peft_adapter_loads_through_config_and_generates(proof, tmp_path, tiny_model_path):
    """The convert+load half of the short real run: the saved PEFT adapter, converted against
    the bundled Q4_1 base, selected by roles.echo.adapter, generates text."""
    from agx.cli.main import main
    from agx.config import load_config
    from agx.runtime.engine import ChatRequest
    from agx.runtime.pool import EnginePool

    out = tmp_path / "echo-lora.gguf"
    assert main(["-C", str(tmp_path), "adapters", "convert", str(proof["dir"] / "peft"), "--base", "echo", "-o", str(out)]) == 0
    config = load_config(tmp_path, overrides=[
        "roles.echo.n_ctx=512", "roles.echo.n_threads=2", f"roles.echo.adapter={out}"], use_user_file=False).config
    adapter_cfg = json.loads((proof["dir"] / "peft" / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 8
    pool = EnginePool(config, tmp_path)
    try:
        engine = pool.engine("echo")
        text, stats = engine.complete(ChatRequest(messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, temperature=0.0))
        assert stats.completion_tokens > 0 and text.strip()
        assert engine.info().adapter == "echo-lora.gguf"
    finally:
        pool.close()
